"""Airflow plugin ``dataset_ops``: the suite's HTTP API and the Uploads page on Airflow's own API server.

Mounts :func:`dataset_ops.api.app.create_app` at ``/dataset-ops``, so the API server answers

* ``/dataset-ops/apify/facebook/...``: the inventory of downloaded Apify datasets and the
  download trigger (:mod:`dataset_ops.apify.api`);
* ``/dataset-ops/staging/...``: staged uploads as a service: resumable multipart uploads,
  staged files, error reports, retries, downloads, cleanup, health and metrics
  (:mod:`dataset_ops.staging.api`);
* ``/dataset-ops/staging/ui/``: the Uploads page, shown in the Airflow UI's menu (Browse >
  Uploads) as an external view,

behind Airflow's authentication (a JWT from ``POST /auth/token``, or the UI's cookie) and the auth
manager's permissions on the DAGs ``apify_dataset_download`` and ``staged_upload_validation``;
OpenAPI docs at ``/dataset-ops/docs``.

Every Airflow process (scheduler, workers, task runners) imports this file, so it only imports
FastAPI and pydantic; the API-server modules are imported on the first request. The library
``dataset_ops`` itself is not a plugin (``plugins/.airflowignore``): it is on ``sys.path``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dataset_ops.api.app import create_app


class DatasetOpsPlugin(AirflowPlugin):
    name = "dataset_ops"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/dataset-ops", "name": "dataset-ops API"}]
    external_views = [
        {
            "name": "Uploads",
            "href": "/dataset-ops/staging/ui/",
            "destination": "nav",
            "category": "browse",
            "url_route": "uploads",
        }
    ]
