-- The deployment and its model (one row; none: unknown deployment).
SELECT d.id AS deployment_id, d.name AS deployment_name, m.id AS model_id, m.name AS model_name,
       m.version AS model_version, m.framework, m.trained_at, m.num_classes, m.accuracy
FROM deployments AS d
JOIN models AS m ON m.id = d.model_id
WHERE d.id = %(deployment_id)s
