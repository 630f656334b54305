import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NNCOMPRESS_SHARED", ROOT.parent / "shared"))
CORPORA = SHARED / "corpora"


def corpus_file(rel: str) -> Path:
    """A file of ../shared/corpora, or a skip with a message when it is not there."""
    p = CORPORA / rel
    if not p.is_file():
        pytest.skip(f"{p} not present (the evaluation corpora live in ../shared/corpora)")
    return p


def canterbury_files() -> list[Path]:
    d = CORPORA / "canterbury"
    return sorted(d.iterdir()) if d.is_dir() else []


@pytest.fixture
def corpora_dir() -> Path:
    if not CORPORA.is_dir():
        pytest.skip(f"{CORPORA} not present")
    return CORPORA
