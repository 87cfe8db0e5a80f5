"""Frames of real MP4s written with cv2.VideoWriter (no mocks): which frames, their names, bytes,
hashes and colours; bad videos fail with a reason naming the file and never stop the others."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset_ops.apify.frames import FrameResult, extract_all, extract_frames

FPS = 10
SIZE = (64, 48)  # width, height
SECONDS = 3.5  # 35 frames: t = 0.0 ... 3.4 s
#: BGR colour of each second of the test video (second 0, 1, 2, 3).
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255)]
STEM = "123_abcdef012345"


def write_video(path: Path, seconds: float = SECONDS, fps: int = FPS) -> Path:
    """An mp4v MP4 whose colour is COLOURS[second] (changes each whole second)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    assert writer.isOpened(), "OpenCV could not open an mp4v VideoWriter"
    try:
        for i in range(round(seconds * fps)):
            frame = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
            frame[:] = COLOURS[i // fps]
            writer.write(frame)
    finally:
        writer.release()
    return path


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory) -> bytes:
    return write_video(tmp_path_factory.mktemp("src") / "v.mp4").read_bytes()


@pytest.fixture
def video(tmp_path, video_bytes) -> Path:
    path = tmp_path / "videos" / f"{STEM}.mp4"
    path.parent.mkdir()
    path.write_bytes(video_bytes)
    return path


def colour_at(path: Path) -> int:
    """Index into COLOURS of the JPEG's mean colour (asserting it is close to that colour)."""
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (SIZE[1], SIZE[0], 3)
    mean = image.reshape(-1, 3).mean(axis=0)
    distances = [float(np.abs(mean - np.array(c)).max()) for c in COLOURS]
    best = int(np.argmin(distances))
    assert distances[best] < 40, (path.name, mean)
    return best


def check_files(result: FrameResult, out: Path) -> None:
    """Every listed JPEG exists with the listed size and hash, decodes, and nothing else is there."""
    for frame in result.frames:
        data = (out / frame["name"]).read_bytes()
        assert frame["bytes"] == len(data) > 0
        assert frame["sha256"] == hashlib.sha256(data).hexdigest()
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    assert not list(out.glob("*.part"))


def test_one_frame_per_second_with_names_hashes_and_the_colour_of_that_second(video, tmp_path):
    out = tmp_path / "frames"
    result = extract_frames(video, out, 1.0)
    assert result.status == "extracted" and result.error is None
    assert result.video == f"{STEM}.mp4"
    assert result.fps == pytest.approx(FPS) and result.duration_seconds == pytest.approx(SECONDS)
    assert [f["seconds"] for f in result.frames] == [0.0, 1.0, 2.0, 3.0]
    assert [f["name"] for f in result.frames] == [f"{STEM}_{ms:09d}ms.jpg" for ms in (0, 1000, 2000, 3000)]
    assert sorted(p.name for p in out.iterdir()) == [f["name"] for f in result.frames]
    check_files(result, out)
    assert [colour_at(out / f["name"]) for f in result.frames] == [0, 1, 2, 3]
    assert result.to_dict() == {
        "video": f"{STEM}.mp4",
        "status": "extracted",
        "frames": result.frames,
        "fps": result.fps,
        "duration_seconds": result.duration_seconds,
        "error": None,
    }


def test_half_second_interval_takes_seven_frames(video, tmp_path):
    out = tmp_path / "frames"
    result = extract_frames(video, out, 0.5, jpeg_quality=70)
    assert result.status == "extracted"
    assert [f["seconds"] for f in result.frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert result.frames[1]["name"] == f"{STEM}_000000500ms.jpg"
    check_files(result, out)
    assert [colour_at(out / f["name"]) for f in result.frames] == [0, 0, 1, 1, 2, 2, 3]


def test_targets_between_frames_take_the_next_frame_once(video, tmp_path):
    # 0.25 s targets on a 10 fps grid: the first frame at/after each target, never one twice
    result = extract_frames(video, tmp_path / "a", 0.25)
    assert [f["seconds"] for f in result.frames] == [
        0.0, 0.3, 0.5, 0.8, 1.0, 1.3, 1.5, 1.8, 2.0, 2.3, 2.5, 2.8, 3.0, 3.3,
    ]  # fmt: skip
    assert result.frames[1]["name"] == f"{STEM}_000000300ms.jpg"
    # an interval below the frame interval: every frame, each once
    every = extract_frames(video, tmp_path / "b", 0.04)
    assert len(every.frames) == 35 and len({f["name"] for f in every.frames}) == 35
    # an interval longer than the video: the first frame only
    assert [f["seconds"] for f in extract_frames(video, tmp_path / "c", 60).frames] == [0.0]
    # max_frames stops early and is still a success
    capped = extract_frames(video, tmp_path / "d", 0.5, max_frames=3)
    assert capped.status == "extracted" and [f["seconds"] for f in capped.frames] == [0.0, 0.5, 1.0]
    assert capped.duration_seconds == pytest.approx(SECONDS)  # from the container's frame count / fps
    assert len(list((tmp_path / "d").iterdir())) == 3


def test_bad_videos_fail_with_the_file_and_reason_while_good_ones_succeed(video, tmp_path):
    folder = video.parent
    corrupt = folder / "111_corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(5).bytes(4096))
    empty = folder / "222_empty.mp4"
    empty.write_bytes(b"")
    missing = folder / "333_missing.mp4"
    html = folder / "444_html.mp4"  # an error page saved as a video
    html.write_text("<!DOCTYPE html><html><body>Sorry, this content isn't available</body></html>")
    still = folder / "555_still.mp4"  # a JPEG saved as a video
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    still.write_bytes(jpeg.tobytes())
    mangled = folder / "666_mangled.mp4"  # the container is fine, the coded frames are not
    data = bytearray(video.read_bytes())
    at = data.index(b"mdat") + 4  # the box: 4 bytes of size (big-endian, header included), "mdat"
    size = int.from_bytes(data[at - 8 : at - 4], "big") - 8
    data[at : at + size] = np.random.default_rng(6).bytes(size)
    mangled.write_bytes(bytes(data))
    second = write_video(folder / "777_second.mp4", seconds=2.0)

    out = tmp_path / "frames"
    inputs = [corrupt, video, empty, missing, html, still, mangled, second]
    results = extract_all(inputs, out, 1.0, workers=3)

    assert [r.video for r in results] == [p.name for p in inputs]
    assert [r.status for r in results] == ["failed", "extracted"] + ["failed"] * 5 + ["extracted"]
    reasons = {
        corrupt: "could not open",
        empty: "empty",
        missing: "does not exist",
        html: "could not open",
        still: "still image",
        mangled: "no frames decoded",
    }
    for result, path in zip(results, inputs, strict=True):
        if path in reasons:
            assert path.name in result.error and reasons[path] in result.error, result.error
            assert result.frames == [] and (result.fps is None) == (path not in (still, mangled))
    assert [f["seconds"] for f in results[1].frames] == [0.0, 1.0, 2.0, 3.0]
    assert [f["seconds"] for f in results[-1].frames] == [0.0, 1.0]
    # only the good videos' frames, whole, nothing half-written
    expected = {f["name"] for r in results for f in r.frames}
    assert {p.name for p in out.iterdir()} == expected and len(expected) == 6
    for result in (results[1], results[-1]):
        check_files(result, out)


def test_frames_written_before_a_failure_are_removed(video, tmp_path):
    out = tmp_path / "frames"
    out.mkdir()
    (out / f"{STEM}_000002000ms.jpg").mkdir()  # the third frame cannot take this name
    result = extract_frames(video, out, 1.0)
    assert result.status == "failed" and result.frames == []
    assert str(video) in result.error and f"could not write {STEM}_000002000ms.jpg" in result.error
    assert [p.name for p in out.iterdir()] == [f"{STEM}_000002000ms.jpg"]  # frames 0 and 1 removed


def test_same_file_twice_is_read_once_and_a_clashing_stem_fails(video, tmp_path):
    other = tmp_path / "elsewhere" / video.name
    other.parent.mkdir()
    other.write_bytes(video.read_bytes())
    relative = Path(os.path.relpath(video))
    results = extract_all([video, relative, other], tmp_path / "frames", 1.0)
    assert [r.status for r in results] == ["extracted", "extracted", "failed"]
    assert results[0] == results[1] and results[0] is not results[1]
    assert results[0].frames is not results[1].frames
    assert str(other) in results[2].error and "stem" in results[2].error
    assert len(list((tmp_path / "frames").iterdir())) == 4


@pytest.mark.parametrize("interval", [0, 0.0, -1.0, math.nan, math.inf])
def test_interval_must_be_positive(video, tmp_path, interval):
    with pytest.raises(ValueError, match="interval_seconds") as info:
        extract_frames(video, tmp_path / "frames", interval)
    assert repr(interval) in str(info.value)
    with pytest.raises(ValueError, match=repr(interval)):
        extract_all([video], tmp_path / "frames", interval)
    assert not (tmp_path / "frames").exists()


def test_other_arguments_are_checked_before_any_video_is_read(video, tmp_path):
    with pytest.raises(ValueError, match="jpeg_quality"):
        extract_frames(video, tmp_path, 1.0, jpeg_quality=101)
    with pytest.raises(ValueError, match="max_frames"):
        extract_all([video], tmp_path, 1.0, max_frames=0)
    with pytest.raises(ValueError, match="workers"):
        extract_all([video], tmp_path, 1.0, workers=0)
    with pytest.raises(TypeError):
        extract_all([video], tmp_path, 1.0, quality=5)
    assert not list(tmp_path.glob("*.jpg"))
