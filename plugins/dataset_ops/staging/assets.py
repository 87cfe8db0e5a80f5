"""The Asset that tells downstream DAGs a validated file arrived in ``fresh/``.

``x-dataset-ops://staging/fresh`` (an ``x-`` scheme: Airflow keeps it as is, parsing loads no
provider). Each promotion adds one event through the alias :data:`FRESH_ALIAS`, with the file's
name, full URI, size in bytes, sha256, record count (these three from its entry in
``fresh/_manifest.json``), data type and the manifest's URI in its extra
(:func:`dataset_ops.staging.tasks.promotion_event_extra`).
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

FRESH_ASSET = Asset(name="staging_fresh", uri="x-dataset-ops://staging/fresh", group="staging")
FRESH_ALIAS = AssetAlias("staging_promotions", group="staging")
