"""The FastAPI app the plugin ``dataset_ops`` mounts at ``/dataset-ops`` on Airflow's API server.

Routers: :mod:`dataset_ops.apify.api` (``/apify/facebook/...``), :mod:`dataset_ops.staging.api`
(``/staging/...``) and :mod:`dataset_ops.imdb.api` (``/imdb/...``, the read-only IMDb API); the
Uploads page's files (built by ``make install`` from ``ui/uploads`` into
``plugins/dataset_ops/staging/webui/``) at ``/staging/ui/``. OpenAPI at ``/dataset-ops/openapi.json``,
Swagger UI at ``/dataset-ops/docs``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dataset_ops.api.common import http_error, validation_error


def create_app() -> FastAPI:
    """The app: the routers, the page's static files and the suite's error handlers."""
    from dataset_ops.apify import api as apify_api
    from dataset_ops.imdb import api as imdb_api
    from dataset_ops.staging import api as staging_api

    app = FastAPI(
        title="dataset-ops",
        description=(
            "## Apify datasets\n\n"
            + apify_api.API_DESCRIPTION
            + "\n\n## Staged uploads\n\n"
            + staging_api.API_DESCRIPTION
            + "\n\n## IMDb\n\n"
            + imdb_api.API_DESCRIPTION
            + "\n\n**Authentication** is Airflow's, as above; reading needs read access to the DAG "
            f"`{imdb_api.DAG_ID}`. The database is the Airflow Connection `{imdb_api.IMDB_CONN_ID}`."
        ),
        version="2",
    )
    app.include_router(apify_api.router)
    app.include_router(staging_api.router)
    app.include_router(imdb_api.router)
    staging_api.mount_page(app)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    return app
