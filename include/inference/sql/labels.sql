-- Classes of the deployment's model; a label names the reference it stands for (NULL: none).
SELECT l.id AS label_id, l.name AS label_name, l.reference_id
FROM labels AS l
JOIN deployments AS d ON d.model_id = l.model_id
WHERE d.id = %(deployment_id)s
ORDER BY l.id
