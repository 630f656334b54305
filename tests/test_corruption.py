"""Damaged .nnc files must fail loudly: an NNCError (exit 1 from the CLI), never wrong output."""
import os
import random
import subprocess
import sys

import pytest

import nncompress
from nncompress.errors import NNCError

from helpers import mutate

DATA = (b"Alice was beginning to get very tired of sitting by her sister on the bank. " * 30)[:2000]


@pytest.fixture(scope="module")
def blob():
    # 3 streams and several segments, so every record type is present.
    return nncompress.compress(DATA, model="order0", streams=3, segment_steps=200)


def _mutations(blob, n, seed):
    rng = random.Random(seed)
    for _ in range(n):
        yield mutate(blob, rng)


def test_every_prefix_is_rejected(blob):
    for cut in range(len(blob)):
        with pytest.raises(NNCError):
            nncompress.decompress(blob[:cut])


def test_random_damage_never_decodes_silently(blob):
    for kind, i, bad in _mutations(blob, 400, seed=1):
        if bad == blob:
            continue
        try:
            out = nncompress.decompress(bad)
        except NNCError:
            continue
        pytest.fail(f"{kind} at {i} decoded without error ({'same' if out == DATA else 'WRONG'} data)")


def test_cli_reports_damage_in_one_line_and_writes_nothing(blob, tmp_path):
    for k, (kind, i, bad) in enumerate(_mutations(blob, 20, seed=2)):
        d = tmp_path / str(k)
        d.mkdir()
        f = d / "x.nnc"
        f.write_bytes(bad)
        p = subprocess.run([sys.executable, "-m", "nncompress", "d", str(f)], capture_output=True,
                           timeout=120)
        err = p.stderr.decode()
        assert p.returncode == 1, (kind, i, err)
        assert err.startswith("nncompress: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
        assert os.listdir(d) == ["x.nnc"], (kind, i)
