from pathlib import Path

import pytest

from helpers import CORPORA


@pytest.fixture
def corpora_dir() -> Path:
    if not CORPORA.is_dir():
        pytest.skip(f"{CORPORA} not present")
    return CORPORA
