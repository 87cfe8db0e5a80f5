"""Build a folder of gzipped IMDb dumps from the real slices in ``../shared/data/imdb``.

title.principals comes from ``head-2025-04/``, the other six from ``head-2025-08/`` (see
``shared/data/PROVENANCE.md``). Files are gzipped as IMDb serves them (``<name>.tsv.gz``).
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

#: Real public data (``shared/data`` beside the checkout, or ``$DATASET_OPS_SHARED_DATA``).
SHARED_DATA = Path(
    os.environ.get("DATASET_OPS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)
if not (SHARED_DATA / "PROVENANCE.md").is_file():
    raise RuntimeError(
        f"the tests read real data from {SHARED_DATA}, which is missing: check out the project "
        "beside shared/ or set DATASET_OPS_SHARED_DATA"
    )
IMDB_DATA = SHARED_DATA / "imdb"
FULL_RATINGS = IMDB_DATA / "title.ratings.2018-03-12.full.tsv.gz"
FULL_RATINGS_ROWS = 812_970


def slice_path(name: str) -> Path:
    """The real TSV slice used for dump ``name``."""
    folder = "head-2025-04" if name == "title.principals" else "head-2025-08"
    return IMDB_DATA / folder / f"{name}.tsv"


def data_rows(path: Path) -> int:
    """Data rows of a TSV (lines after the header; a last line without newline counts)."""
    data = path.read_bytes()
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return lines - 1


def gzip_file(src: Path, dest: Path) -> Path:
    """Gzip ``src`` into ``dest`` (level 6, like IMDb's files)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, gzip.open(dest, "wb", compresslevel=6) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return dest


def build_dump_folder(folder: Path, names) -> dict[str, int]:
    """Write ``<name>.tsv.gz`` for each name; returns the data rows per name."""
    rows = {}
    for name in names:
        src = slice_path(name)
        gzip_file(src, folder / f"{name}.tsv.gz")
        rows[name] = data_rows(src)
    return rows
