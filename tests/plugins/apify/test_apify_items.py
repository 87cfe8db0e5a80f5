"""Apify items -> JSONL + CSV, run-id checks, flattening, on the real Facebook Ads Library items."""

from __future__ import annotations

import csv
import json

import orjson
import pytest
from helpers.imdb_data import SHARED_DATA

from dataset_ops.apify.items import check_run_id, flatten_item, write_csv_from_jsonl, write_jsonl

ADS = SHARED_DATA / "apify_fb_ads" / "fb_ad_library_keyword_search.ads.json"


def real_items() -> list[dict]:
    groups = json.loads(ADS.read_text())["results"]
    return [item for group in groups for item in group]


@pytest.mark.parametrize(
    "bad", ["../../etc", "HG7ML7M8z78YcAPE", "HG7ML7M8z78YcAPEB/", "", None, "a" * 17 + "\n"]
)
def test_run_ids_must_be_17_letters_or_digits(bad):
    with pytest.raises(ValueError, match="not an Apify run id"):
        check_run_id(bad)
    assert check_run_id("HG7ML7M8z78YcAPEB") == "HG7ML7M8z78YcAPEB"


def test_flatten_nested_objects_and_lists():
    flat = flatten_item({"a": {"b": 1, "c": {"d": None}}, "l": [1, {"x": 2}], "t": True, "e": {}})
    assert flat == {"a.b": 1, "a.c.d": None, "l": '[1,{"x":2}]', "t": "true", "e": "{}"}


def test_jsonl_and_csv_of_the_real_items(tmp_path):
    items = real_items()
    assert len(items) >= 30
    jsonl = tmp_path / "HG7ML7M8z78YcAPEB.jsonl"
    assert write_jsonl(iter(items), jsonl) == len(items)
    assert [orjson.loads(line) for line in jsonl.read_bytes().splitlines()] == items
    rows, columns = write_csv_from_jsonl(jsonl, tmp_path / "HG7ML7M8z78YcAPEB.csv")
    assert rows == len(items)
    assert "snapshot.title" in columns and "adArchiveID" in columns and "snapshot.cards" in columns
    with open(tmp_path / "HG7ML7M8z78YcAPEB.csv", newline="", encoding="utf-8") as fh:
        read = list(csv.DictReader(fh))
    assert [r["adArchiveID"] for r in read] == [str(i["adArchiveID"]) for i in items]
    assert json.loads(read[0]["snapshot.cards"]) == items[0]["snapshot"]["cards"]
    assert not list(tmp_path.glob("*.partial"))


def test_media_of_the_real_items_follow_the_fallbacks_and_get_stable_names():
    from dataset_ops.apify.media import MediaRef, media_refs

    items = real_items()
    refs = [ref for item in items for ref in media_refs(item)]
    assert refs and {r.kind for r in refs} <= {"image", "video"}
    cards = [r for r in refs if r.source.startswith("snapshot.cards[")]
    assert cards and all(r.url.startswith("https://") for r in refs)
    # fallbacks: an image without an original uses the resized one; a video without HD the SD one
    item = {
        "adArchiveID": "123",
        "snapshot": {
            "images": [{"original_image_url": None, "resized_image_url": "https://x/r.png?a=1"}],
            "videos": [
                {
                    "video_hd_url": "",
                    "video_sd_url": "https://x/v",
                    "video_preview_image_url": "https://x/p.jpg",
                }
            ],
            "cards": [{"original_image_url": "https://x/r.png?a=1"}],  # the same URL again: once
        },
    }
    got = media_refs(item)
    assert [(r.kind, r.source) for r in got] == [
        ("image", "snapshot.images[0].resized_image_url"),
        ("video", "snapshot.videos[0].video_sd_url"),
        ("image", "snapshot.videos[0].video_preview_image_url"),
    ]
    assert got[0].name.startswith("123_") and got[0].name.endswith(".png") and got[1].name.endswith(".mp4")
    assert got[0].name == MediaRef("https://x/r.png?a=1", "image", "123", "other").name  # stable
    assert MediaRef("https://x/a.jpg", "image", "../../etc", "s").name.startswith("______etc_")
