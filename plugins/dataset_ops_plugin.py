"""Airflow plugin ``dataset_ops``: the suite's HTTP API and the Uploads page on Airflow's own API server.

Mounts :func:`dataset_ops.api.app.create_app` at ``/dataset-ops``, so the API server answers

* ``/dataset-ops/apify/facebook/...``: the inventory of downloaded Apify datasets and the
  download trigger (:mod:`dataset_ops.apify.api`);
* ``/dataset-ops/staging/...``: staged uploads as a service: resumable multipart uploads,
  staged files, error reports, retries, downloads, cleanup, health and metrics
  (:mod:`dataset_ops.staging.api`);
* ``/api/v1/apify/facebook/...``: the same inventory on the old service's paths, with its
  defaults (a cleanup without ``dry_run`` deletes, the download waits for the dataset), so its
  clients change only the host and add a token;
* ``/dataset-ops/imdb/...``: the read-only IMDb API over the tables ``imdb_load`` publishes
  (:mod:`dataset_ops.imdb.api`; read access to the DAG ``imdb_load``);
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
from dataset_ops.apify.api import SEED_PREFIX, create_seed_app


class DatasetOpsPlugin(AirflowPlugin):
    name = "dataset_ops"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": "/dataset-ops", "name": "dataset-ops API"},
        # the old inventory service's paths, for its clients (same routes and permissions)
        {"app": create_seed_app(), "url_prefix": SEED_PREFIX, "name": "Apify inventory (old paths)"},
    ]
    external_views = [
        {
            "name": "Uploads",
            "href": "/dataset-ops/staging/ui/",
            "destination": "nav",
            "category": "browse",
            "url_route": "uploads",
        }
    ]
