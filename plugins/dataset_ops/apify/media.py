"""Media of Facebook Ads Library items (Apify actor output): which URLs, and their stable names.

Per item (see ``../shared/data/apify_fb_ads/`` and the actor's README), in ``snapshot`` and in
each of ``snapshot.cards[]``:

* ``images[]``: ``original_image_url``, or ``resized_image_url`` when there is no original;
* ``videos[]``: ``video_hd_url``, or ``video_sd_url`` when there is no HD one (the video), and
  ``video_preview_image_url`` (an image);
* cards carry the same keys directly (``original_image_url``, ``video_hd_url``, ...).

A file's name is ``{adArchiveID}_{sha1(url)[:12]}.{ext}``: the same URL always gets the same
name, so a rerun finds what it already has, and two ads sharing a URL share one file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_EXT = re.compile(r"\.([A-Za-z0-9]{2,5})$")
_IMAGE_EXTS = {"jpg", "jpeg", "png", "gif", "webp"}
_VIDEO_EXTS = {"mp4", "mov", "webm"}


@dataclass(frozen=True)
class MediaRef:
    """One media file of an item.

    :param url: where it is. :param kind: ``image`` or ``video``.
    :param ad_id: the item's ``adArchiveID`` (or ``adid``). :param source: the key it came from,
        e.g. ``snapshot.cards[2].video_hd_url``.
    """

    url: str
    kind: str
    ad_id: str
    source: str

    @property
    def name(self) -> str:
        """``{ad_id}_{sha1(url)[:12]}.{ext}`` (``ext`` from the URL path, else jpg / mp4)."""
        digest = hashlib.sha1(self.url.encode(), usedforsecurity=False).hexdigest()[:12]
        match = _EXT.search(urlsplit(self.url).path)
        ext = match.group(1).lower() if match else ""
        allowed = _IMAGE_EXTS if self.kind == "image" else _VIDEO_EXTS
        if ext not in allowed:
            ext = "jpg" if self.kind == "image" else "mp4"
        safe_id = re.sub(r"[^A-Za-z0-9_-]", "_", self.ad_id)[:64] or "ad"
        return f"{safe_id}_{digest}.{ext}"


def _from(holder: dict, where: str, ad_id: str) -> list[MediaRef]:
    refs = []
    image = holder.get("original_image_url") or holder.get("resized_image_url")
    if image:
        key = "original_image_url" if holder.get("original_image_url") else "resized_image_url"
        refs.append(MediaRef(image, "image", ad_id, f"{where}.{key}"))
    video = holder.get("video_hd_url") or holder.get("video_sd_url")
    if video:
        key = "video_hd_url" if holder.get("video_hd_url") else "video_sd_url"
        refs.append(MediaRef(video, "video", ad_id, f"{where}.{key}"))
    preview = holder.get("video_preview_image_url")
    if preview:
        refs.append(MediaRef(preview, "image", ad_id, f"{where}.video_preview_image_url"))
    return refs


def media_refs(item: dict) -> list[MediaRef]:
    """Every media file of ``item`` in document order (duplicates within the item removed)."""
    ad_id = str(item.get("adArchiveID") or item.get("adid") or item.get("ad_archive_id") or "ad")
    snapshot = item.get("snapshot") or {}
    refs: list[MediaRef] = []
    for i, image in enumerate(snapshot.get("images") or []):
        refs += _from(image or {}, f"snapshot.images[{i}]", ad_id)
    for i, video in enumerate(snapshot.get("videos") or []):
        refs += _from(video or {}, f"snapshot.videos[{i}]", ad_id)
    for i, card in enumerate(snapshot.get("cards") or []):
        refs += _from(card or {}, f"snapshot.cards[{i}]", ad_id)
    seen: set[str] = set()
    unique = []
    for ref in refs:
        if ref.url not in seen:
            seen.add(ref.url)
            unique.append(ref)
    return unique
