-- Devices of the deployment.
SELECT v.id AS device_id, v.code AS device_code, v.shop, v.location, v.active
FROM devices AS v
WHERE v.deployment_id = %(deployment_id)s
ORDER BY v.id
