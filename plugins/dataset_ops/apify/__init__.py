"""Apify actor runs (Facebook Ads Library scraper): dataset items, media, video frames, inventory.

* :mod:`.items`: run ids, the client from the ``apify_default`` Connection, items as JSONL + CSV;
* :mod:`.run`: :class:`~.run.ApifyRunSensor` (deferrable) waits for a run to succeed;
* :mod:`.media`: the media URLs of an item and their stable file names;
* :mod:`.download`: concurrent, verified, resumable media downloads;
* :mod:`.frames`: video frames with OpenCV;
* :mod:`.tasks`: the steps of the ``apify_dataset_download`` DAG and the manifest;
* :mod:`.inventory`: list, inspect, delete and retention of stored datasets (DAGs and API);
* :mod:`.api`: the ``/dataset-ops/apify/facebook`` API served by Airflow's API server.
"""
