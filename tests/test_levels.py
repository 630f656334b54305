"""Compression levels through the CLI: -1 .. -9, --fast/--best, info names the level."""
import subprocess
import sys

import pytest

TEXT = b"".join(b"level test line %d: the quick brown fox jumps over the lazy dog.\n" % i
                for i in range(400))


def nnc(*args, **kw):
    return subprocess.run([sys.executable, "-m", "nncompress", *map(str, args)],
                          capture_output=True, **kw)


def test_level_1_round_trip_and_info_names_it(tmp_path):
    src = tmp_path / "t.txt"
    src.write_bytes(TEXT)
    r = nnc("c", "-1", "-v", src)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t.txt.nnc").exists()
    info = nnc("info", tmp_path / "t.txt.nnc")
    assert info.returncode == 0 and b"level            -1" in info.stdout
    assert b"predictor        bcm" in info.stdout
    out = tmp_path / "back.txt"
    assert nnc("d", tmp_path / "t.txt.nnc", out).returncode == 0
    assert out.read_bytes() == TEXT


def test_fast_best_and_last_level_wins(tmp_path):
    src = tmp_path / "t.txt"
    src.write_bytes(TEXT)
    a, b = tmp_path / "a.nnc", tmp_path / "b.nnc"
    assert nnc("c", "--fast", src, a).returncode == 0
    assert nnc("c", "-9", "-2", "-1", src, b).returncode == 0
    assert a.read_bytes() == b.read_bytes()
    import nncompress
    # the CLI writes a framed file (format version 5) whose one frame is the API's level-1 body
    from nncompress.format import frames
    body = nncompress.compress(TEXT, level=1)
    assert a.read_bytes()[frames.PREAMBLE_BYTES + frames.RECORD_BYTES:][:len(body)] == body


def test_a_model_chosen_by_hand_has_no_level(tmp_path):
    src = tmp_path / "t.txt"
    src.write_bytes(TEXT)
    assert nnc("c", "-m", "order0", src).returncode == 0
    info = nnc("info", tmp_path / "t.txt.nnc")
    assert b"level            none" in info.stdout


def test_level_and_model_together_is_a_usage_error(tmp_path):
    src = tmp_path / "t.txt"
    src.write_bytes(TEXT)
    r = nnc("c", "-3", "-m", "ctx1", src)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert b"not both" in r.stderr and not (tmp_path / "t.txt.nnc").exists()


def test_help_lists_every_level():
    r = nnc("c", "--help")
    assert r.returncode == 0
    for n in range(1, 10):
        assert f"-{n}  ".encode() in r.stdout


@pytest.mark.parametrize("level", [2, 3])
def test_levels_without_the_neural_model_round_trip(level):
    import nncompress
    blob = nncompress.compress(TEXT, level=level)
    assert nncompress.decompress(blob) == TEXT
