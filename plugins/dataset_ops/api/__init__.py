"""The suite's HTTP API, served by Airflow's own API server (plugin ``dataset_ops``).

* :mod:`dataset_ops.api.common`: what every router shares: Airflow authentication and
  permissions per DAG, the error models and handlers, DAG-run triggering, the audit log.
* :mod:`dataset_ops.api.app`: the FastAPI app the plugin mounts at ``/dataset-ops``, with the
  routers :mod:`dataset_ops.apify.api` (``/apify/facebook``) and :mod:`dataset_ops.staging.api`
  (``/staging``, and the Uploads page at ``/staging/ui/``).
"""
