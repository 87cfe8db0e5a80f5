"""The Asset that tells downstream DAGs a validated file arrived in ``fresh/``.

``x-dataset-ops://staging/fresh`` (an ``x-`` scheme: Airflow keeps it as is, parsing loads no
provider). Each promotion adds one event through the alias :data:`FRESH_ALIAS`, with the file's
name, full URI, size in bytes, sha256, record count and data type in its extra.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

FRESH_ASSET = Asset(name="staging_fresh", uri="x-dataset-ops://staging/fresh", group="staging")
FRESH_ALIAS = AssetAlias("staging_promotions", group="staging")
