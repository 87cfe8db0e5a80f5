"""Apify actor runs (Facebook Ads Library scraper): dataset items, media, video frames, inventory.

Work in progress (issue 5):

* :mod:`.items`: run ids, the client from the ``apify_default`` Connection, items as JSONL + CSV;
* :mod:`.media`: the media URLs of an item and their stable file names;
* :mod:`.download`: concurrent, verified, resumable media downloads.
"""
