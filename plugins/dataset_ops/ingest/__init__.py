"""Microservice ingest: paginated REST services -> CSV, JSONL and Parquet in the S3 data lake.

* :mod:`.config`: ``include/microservices.yaml`` (services, entities, pagination, keys, schemas).
* :mod:`.pagination`: page number, offset, cursor, next link and ``Link`` header styles.
* :mod:`.http`: sessions from Airflow HTTP Connections with retries; the page loop and its guards.
* :mod:`.flatten`: nested documents -> rows with a stable column set from the schema.
* :mod:`.writers`: the CSV / JSONL / Parquet files of a run.
* :mod:`.extract`: one entity, one run, end to end (:func:`~.extract.ingest_entity`).
* :mod:`.catalog`: the lake's table definitions (Athena DDL with partition projection, Glue
  ``TableInput``) written beside the data under ``_catalog/``.
"""
