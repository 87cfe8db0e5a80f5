"""Airflow plugin ``dataset_ops``: the dataset inventory API on Airflow's own API server.

Mounts :func:`dataset_ops.apify.api.create_app` at ``/dataset-ops``, so the API server answers

* ``GET    /dataset-ops/apify/facebook/runs/list``
* ``GET    /dataset-ops/apify/facebook/runs/{run_id}``
* ``DELETE /dataset-ops/apify/facebook/runs/{run_id}``
* ``POST   /dataset-ops/apify/facebook/runs/cleanup``
* ``POST   /dataset-ops/apify/facebook/download-dataset-from-run``

behind Airflow's authentication (a JWT from ``POST /auth/token``) and the auth manager's
permissions on the DAG ``apify_dataset_download``; OpenAPI docs at ``/dataset-ops/docs``.

Every Airflow process (scheduler, workers, task runners) imports this file, so it only imports
FastAPI and pydantic; the API-server modules are imported on the first request. The library
``dataset_ops`` itself is not a plugin (``plugins/.airflowignore``): it is on ``sys.path``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dataset_ops.apify.api import create_app


class DatasetOpsPlugin(AirflowPlugin):
    name = "dataset_ops"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/dataset-ops", "name": "Dataset ops inventory"}]
