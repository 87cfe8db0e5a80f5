"""One JPEG every ``interval_seconds`` from short ad videos (MP4), with OpenCV.

Source: OpenCV ``cv::VideoCapture`` (https://docs.opencv.org/4.x/d8/dfe/classcv_1_1VideoCapture.html)
through its FFmpeg backend (``cv2.CAP_FFMPEG``, so a file name containing ``%`` is never taken for
an image-sequence pattern); ``cv2.imencode`` for the JPEGs
(https://docs.opencv.org/4.x/d4/da8/group__imgcodecs.html, ``IMWRITE_JPEG_QUALITY`` 0-100).

How frames are chosen: the video is read sequentially with ``cap.grab()`` (demux + decode, no
copy to Python); each grabbed frame's presentation time is ``CAP_PROP_POS_MSEC`` (falling back to
``frame_index / CAP_PROP_FPS`` when the backend reports no usable, increasing time). The targets
are ``t = 0, interval, 2*interval, ...``; the first frame whose time is at or after a target (half
a millisecond of tolerance) is ``cap.retrieve()``d, written, and the next target is the first one
after that frame's time, so a gap in a variable-frame-rate video never yields the same frame twice.
Targets end with the video (t < duration), and after ``max_frames`` JPEGs. No
``CAP_PROP_POS_FRAMES`` seeking (slow/unreliable on some codecs); sequential reading is cheap for
short ads. At most one decoded frame (and its JPEG bytes) is held at a time.

Files: ``{video_stem}_{milliseconds:09d}ms.jpg`` directly in ``out_dir``, where ``milliseconds``
is the chosen frame's own time rounded to the millisecond (for a constant 10 fps video with
``interval_seconds=1.0``: ``..._000000000ms.jpg``, ``..._000001000ms.jpg``, ...). Each JPEG is
written to ``<name>.part`` and renamed with ``os.replace``, so a file under its final name is
whole; its ``sha256`` is of the encoded bytes, i.e. of the file.

Failures: a missing, empty, corrupt, truncated or non-video file (or a single still image, e.g.
a JPEG saved as ``.mp4``), a frame that cannot be decoded or encoded, or a JPEG that cannot be
written gives a :class:`FrameResult` with status ``failed`` and an ``error`` naming the file and
the reason; JPEGs already written for that video are removed. Nothing is raised for a bad video;
only invalid arguments raise ``ValueError``.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

#: Largest number of JPEGs per video unless told otherwise.
DEFAULT_MAX_FRAMES = 10_000
DEFAULT_JPEG_QUALITY = 90
#: A frame counts as "at" a target this many seconds before it (half a millisecond: the names'
#: resolution), so float noise in CAP_PROP_POS_MSEC (1999.9999 ms) never skips a frame.
_TOLERANCE = 5e-4


@dataclass
class FrameResult:
    """What happened to one video.

    :param video: the video file's name, e.g. ``123_abcdef012345.mp4``.
    :param status: ``extracted`` or ``failed``.
    :param frames: one dict per JPEG written, in time order: ``{"name": str (file name in out_dir),
        "seconds": float (the frame's presentation time, ms resolution), "bytes": int (file size),
        "sha256": str (hex digest of the file)}``; empty when failed.
    :param fps: frames per second the container reports (``CAP_PROP_FPS``); None if it reports none.
    :param duration_seconds: seconds; the last frame's time plus one frame interval when the video
        was read to its end, otherwise ``CAP_PROP_FRAME_COUNT / CAP_PROP_FPS``; None if unknown.
    :param error: why it failed (names the file and the reason); None when extracted.
    """

    video: str
    status: str
    frames: list[dict] = field(default_factory=list)
    fps: float | None = None
    duration_seconds: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (``frames`` copied)."""
        return asdict(self)


class _Failed(Exception):
    """A reason this video gives no frames (becomes :attr:`FrameResult.error`)."""


def _check_args(
    interval_seconds: float,
    *,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> None:
    if isinstance(interval_seconds, bool) or not isinstance(interval_seconds, numbers.Real):
        raise ValueError(f"interval_seconds must be a number of seconds > 0, not {interval_seconds!r}")
    if not (interval_seconds > 0 and math.isfinite(interval_seconds)):
        raise ValueError(f"interval_seconds must be > 0 (and finite), not {interval_seconds!r}")
    if (
        isinstance(jpeg_quality, bool)
        or not isinstance(jpeg_quality, numbers.Integral)
        or not 0 <= jpeg_quality <= 100
    ):
        raise ValueError(f"jpeg_quality must be an integer from 0 to 100, not {jpeg_quality!r}")
    if isinstance(max_frames, bool) or not isinstance(max_frames, numbers.Integral) or max_frames < 1:
        raise ValueError(f"max_frames must be an integer >= 1, not {max_frames!r}")


def _positive(value: float) -> float | None:
    return value if math.isfinite(value) and value > 0 else None


def _fourcc(cap) -> str:
    import cv2

    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = bytes((code >> shift) & 0xFF for shift in (0, 8, 16, 24)).decode("latin-1")
    return text if text.isprintable() and text.strip() else f"0x{code & 0xFFFFFFFF:08x}"


def _write_jpeg(target: Path, frame, quality: int) -> tuple[int, str]:
    """Encode ``frame`` (BGR ndarray) and write it atomically; ``(bytes, sha256)``."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise _Failed(f"could not encode {target.name} as JPEG")
    data = encoded.tobytes()
    part = target.with_name(target.name + ".part")
    try:
        with open(part, "wb") as out:
            out.write(data)
        os.replace(part, target)
    except OSError as exc:
        raise _Failed(f"could not write {target.name}: {type(exc).__name__}: {exc}") from exc
    finally:
        if part.exists():
            part.unlink()
    return len(data), hashlib.sha256(data).hexdigest()


def _read(cap, video: Path, out_dir: Path, interval: float, quality: int, max_frames: int, result) -> None:
    """Sequentially grab frames, retrieve and write those at the targets; fills ``result``."""
    import cv2

    fps = result.fps
    frame_count = _positive(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    grabbed = 0  # frames grabbed so far; the current one is grabbed - 1
    prev = -math.inf  # time (s) of the previous grabbed frame
    target_index = 0  # the next target is target_index * interval
    last_millis = -1  # name time of the previous JPEG
    reached_end = False
    while len(result.frames) < max_frames:
        if not cap.grab():
            reached_end = True
            break
        index, grabbed = grabbed, grabbed + 1
        msec = cap.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(msec) and msec >= 0 and (index == 0 or msec / 1000 > prev):
            seconds = msec / 1000
        elif fps is not None:
            seconds = max(index / fps, prev)
        else:
            raise _Failed("no frame times (neither CAP_PROP_POS_MSEC nor CAP_PROP_FPS)")
        prev = seconds
        millis = max(round(seconds * 1000), 0)
        if seconds + _TOLERANCE < target_index * interval or millis <= last_millis:
            continue  # before the target, or (interval < 1 ms) same name as the previous JPEG
        ok, frame = cap.retrieve()
        if not ok or frame is None:
            raise _Failed(f"could not decode the frame at {seconds:.3f} s")
        last_millis = millis
        target = out_dir / f"{video.stem}_{millis:09d}ms.jpg"
        size, digest = _write_jpeg(target, frame, quality)
        del frame  # hold at most one frame
        result.frames.append({"name": target.name, "seconds": millis / 1000, "bytes": size, "sha256": digest})
        target_index = math.floor((seconds + _TOLERANCE) / interval) + 1
    if grabbed == 0:
        raise _Failed("no frames decoded (opened, but the first frame could not be read)")
    if reached_end and grabbed == 1 and frame_count is None:
        raise _Failed(f"a single still image (codec {_fourcc(cap)}), not a video")
    if reached_end:
        result.duration_seconds = round(prev + (1 / fps if fps else 0.0), 6)
    elif fps is not None and frame_count is not None:
        result.duration_seconds = round(frame_count / fps, 6)


def extract_frames(
    video: Path,
    out_dir: Path,
    interval_seconds: float,
    *,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> FrameResult:
    """One JPEG every ``interval_seconds`` of ``video`` into ``out_dir`` (see the module docstring).

    :param video: an MP4 (anything OpenCV's FFmpeg backend reads). :param out_dir: where the JPEGs
        go (created if missing). :param interval_seconds: seconds between targets, > 0.
    :param jpeg_quality: ``IMWRITE_JPEG_QUALITY``, 0-100. :param max_frames: stop after this many
        JPEGs (the result is still ``extracted``).
    :returns: a :class:`FrameResult`; ``failed`` (with ``error`` naming the file and the reason,
        and no JPEGs left behind) for a missing, empty, corrupt or non-video file.
    :raises ValueError: for an invalid ``interval_seconds`` (<= 0, NaN, infinite), ``jpeg_quality``
        or ``max_frames``, naming the value.
    """
    _check_args(interval_seconds, jpeg_quality=jpeg_quality, max_frames=max_frames)
    import cv2

    video, out_dir = Path(video), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = FrameResult(video=video.name, status="failed")
    cap = None
    try:
        if not video.exists():
            raise _Failed("does not exist")
        if not video.is_file():
            raise _Failed("is not a file")
        if video.stat().st_size == 0:
            raise _Failed("is empty (0 bytes)")
        cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            raise _Failed("could not open as a video (corrupt, truncated or not a video)")
        result.fps = _positive(cap.get(cv2.CAP_PROP_FPS))
        _read(cap, video, out_dir, float(interval_seconds), int(jpeg_quality), int(max_frames), result)
        result.status = "extracted"
    except (_Failed, cv2.error, OSError) as exc:
        reason = str(exc) if isinstance(exc, _Failed) else f"{type(exc).__name__}: {exc}".strip()
        result.error = f"{video}: {reason}"
        for frame in result.frames:
            (out_dir / frame["name"]).unlink(missing_ok=True)
        result.frames = []
    finally:
        if cap is not None:
            cap.release()
    return result


def extract_all(
    videos: Iterable[Path],
    out_dir: Path,
    interval_seconds: float,
    *,
    workers: int = 2,
    **kw,
) -> list[FrameResult]:
    """:func:`extract_frames` for each of ``videos`` on a pool of ``workers`` threads (OpenCV
    decodes without the GIL); results in input order. One bad video never stops the others.

    The JPEGs of every video go to ``out_dir`` named after the video's stem, so the same path
    given twice is read once (both positions get equal results) and a *different* video with a
    stem already in the batch is ``failed`` (its frames would overwrite the other's).

    :param kw: ``jpeg_quality``, ``max_frames`` (see :func:`extract_frames`).
    :raises ValueError: for invalid arguments (checked before any video is read), naming the value;
        ``workers`` must be >= 1.
    :raises TypeError: for an unknown keyword.
    """
    _check_args(interval_seconds, **kw)
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, not {workers!r}")
    videos = [Path(v) for v in videos]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_stem: dict[str, str] = {}  # stem -> absolute path of the first video with it
    for video in videos:
        by_stem.setdefault(video.stem, os.path.abspath(video))
    todo: dict[str, Path] = {}  # absolute path -> the video to read, once each, in input order
    for video in videos:
        if by_stem[video.stem] == os.path.abspath(video):
            todo.setdefault(os.path.abspath(video), video)

    def one(video: Path) -> FrameResult:
        return extract_frames(video, out_dir, interval_seconds, **kw)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="frames") as pool:
        done = dict(zip(todo, pool.map(one, todo.values()), strict=True))
    results, handed_out = [], set()
    for video in videos:
        key = os.path.abspath(video)
        if by_stem[video.stem] != key:
            error = (
                f"{video}: another video in this batch ({by_stem[video.stem]}) has the stem "
                f"{video.stem!r}; its frames would overwrite that video's"
            )
            results.append(FrameResult(video=video.name, status="failed", error=error))
        elif key in handed_out:  # the same file again: an equal, separate result
            results.append(replace(done[key], frames=[dict(f) for f in done[key].frames]))
        else:
            handed_out.add(key)
            results.append(done[key])
    return results
