-- Every product (reference) in the catalogue; the analysis joins the ones the records name.
SELECT r.id AS reference_id, r.code AS reference_code, r.name AS reference_name, r.category, r.active
FROM product_references AS r
ORDER BY r.id
