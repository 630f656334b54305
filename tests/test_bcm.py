"""bcm (level 1): the binary context-mixing compressor that codes its own segments."""
import io

import numpy as np
import pytest

import nncompress
from nncompress import api, engine, levels
from nncompress.errors import FormatError, ModelError, NNCError
from nncompress.predictors import bcm, registry, threads
from nncompress.predictors.bcm import BCM, NEXT, PAIRS, STATES
from nncompress.predictors.spec import build_predictor
from helpers import decode_with as _decode

SMALL = {"hash_bits": 12, "match_bits": 12}


def _texts():
    rng = np.random.default_rng(5)
    words = [b"the", b"quick", b"brown", b"fox", b"\xc3\xa9t\xc3\xa9", b"<tag>", b"42", b"\n"]
    prose = b" ".join(words[i] for i in rng.integers(0, len(words), 6000))
    return {
        "prose": prose,
        "random": rng.integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        "zeros": bytes(30000),
        "one": b"x",
        "alternating": b"ab" * 9000,
    }


def _encode(data, pred, seg_steps=None, streams=1):
    out = io.BytesIO()
    engine.encode(io.BytesIO(data), len(data), out, pred, streams, seg_steps)
    return out.getvalue()


def test_state_table_is_closed_and_counts_move():
    assert STATES <= 256 and tuple(PAIRS[0]) == (0, 0)
    assert len({tuple(p) for p in PAIRS}) == STATES
    assert NEXT.min() >= 0 and NEXT.max() < STATES
    # from the empty state a bit counts once
    assert tuple(PAIRS[NEXT[0, 0]]) == (1, 0) and tuple(PAIRS[NEXT[0, 1]]) == (0, 1)
    # a run of ones saturates at the bound, and one zero then halves the ones toward 2
    s = 0
    for _ in range(200):
        s = NEXT[s, 1]
    n0, n1 = PAIRS[s]
    assert n0 == 0 and n1 == bcm._BOUND[0]
    n0, n1 = PAIRS[NEXT[s, 0]]
    assert n0 == 1 and 2 < n1 < bcm._BOUND[0] and n1 <= bcm._BOUND[1]
    # every state's estimate is a probability strictly inside (0, 1) in Q16
    assert bcm.SM_INIT.min() > 0 and bcm.SM_INIT.max() < 1 << 16


@pytest.mark.parametrize("name", list(_texts()))
@pytest.mark.parametrize("seg", [None, 777])
def test_round_trip_in_segments(name, seg):
    data = _texts()[name]
    blob = _encode(data, BCM(**SMALL), seg)
    assert _decode(blob, BCM(**SMALL)) == data
    if name == "zeros" and seg is None:
        assert len(blob) < 300
    if name == "random" and seg is None:   # incompressible input costs little more than its size
        assert len(blob) < len(data) * 1.01 + 200


def test_the_same_bytes_every_time_and_model_carries_over_segments():
    data = _texts()["prose"]
    one = _encode(data, BCM(**SMALL))
    assert _encode(data, BCM(**SMALL)) == one
    # segments restart the coder, not the model: many small ones cost little
    many = _encode(data, BCM(**SMALL), 1000)
    assert len(many) < len(one) * 1.05 + 60 * (len(data) // 1000)
    # the settings change the bits, and the header says which were used
    other = _encode(data, BCM(hash_bits=13, match_bits=12))
    assert other != one
    assert nncompress.read_header(io.BytesIO(other)).settings["hash_bits"] == 13


def test_output_buffer_grows_without_changing_the_bytes(monkeypatch):
    """The encoder stops at a byte boundary when its buffer might overflow and goes on in a
    larger one; the output is the same as with room to spare."""
    data = _texts()["random"]
    p = BCM(**SMALL)
    p.start(1)
    want = p.encode_segment([np.frombuffer(data, dtype=np.uint8)])
    monkeypatch.setattr(bcm, "_first_room", lambda n: 2 * bcm._BYTE_ROOM)
    q = BCM(**SMALL)
    q.start(1)
    assert q.encode_segment([np.frombuffer(data, dtype=np.uint8)]) == want


def test_compresses_text_and_level_1_is_bcm():
    data = _texts()["prose"]
    assert levels.get(1).spec == "bcm"
    blob = api.compress(data, level=1)
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.predictor_name == "bcm" and h.n_streams == 1
    assert h.settings["arith"] == bcm.ARITH
    assert api.decompress(blob) == data
    import lzma
    assert len(blob) < len(lzma.compress(data, preset=9))


def test_a_damaged_segment_is_refused():
    data = _texts()["prose"]
    blob = bytearray(api.compress(data, model="bcm"))
    blob[len(blob) // 2] ^= 0x10
    with pytest.raises(NNCError):
        api.decompress(bytes(blob))


def test_a_cut_segment_is_refused():
    data = _texts()["prose"]
    p = BCM(**SMALL)
    p.start(1)
    words = p.encode_segment([np.frombuffer(data, dtype=np.uint8)])
    q = BCM(**SMALL)
    q.start(1)
    with pytest.raises(FormatError, match="ends early"):
        q.decode_segment(words[: len(words) // 2], [len(data)])


@pytest.mark.parametrize("spec", ["bcm+ctx1", "ctx1+bcm", "bcm+cm", "bcm+match"])
def test_bcm_cannot_be_mixed_or_wrapped(spec):
    with pytest.raises(ModelError, match="codes its own segments|final stage"):
        api.compress(b"some text", model=spec)


def test_a_header_that_wraps_bcm_is_refused_before_anything_is_built():
    inner = BCM()
    from nncompress.predictors.base import stage_identity
    ident = stage_identity("match", inner, {"arith": "match-sse-v1"})
    with pytest.raises(registry.SettingsError, match="codes its own segments"):
        registry.check(ident.name, ident.model_sha256, ident.settings)


def test_at_most_two_streams():
    with pytest.raises(ValueError, match="at most 2 streams"):
        api.compress(b"x" * 5000, model="bcm", streams=3)


@pytest.mark.parametrize("seg", [None, 900])
def test_two_streams_on_one_or_two_threads_give_the_same_bytes(monkeypatch, seg):
    """Each stream has its own model, so the bytes do not depend on how many threads code
    them; a segment where only the first stream is left is coded as one."""
    data = _texts()["prose"][:9001]
    two = _encode(data, BCM(**SMALL), seg, streams=2)
    assert _decode(two, BCM(**SMALL)) == data
    monkeypatch.setattr(threads, "count", lambda: 1)
    assert _encode(data, BCM(**SMALL), seg, streams=2) == two
    assert _decode(two, BCM(**SMALL)) == data
    # two halves, each from an empty model, cost more than one stream
    assert len(two) > len(_encode(data, BCM(**SMALL), seg))


def test_two_stream_segments_are_two_messages_with_their_lengths_first():
    rows = [np.frombuffer(t, dtype=np.uint8) for t in (b"first stream " * 50, b"second " * 80)]
    p = BCM(**SMALL)
    p.start(2)
    words = p.encode_segment(rows)
    a = BCM(**SMALL)
    a.start(1)
    first = a.encode_segment(rows[:1])
    assert words[:4] == len(first).to_bytes(4, "little") and words[4:4 + len(first)] == first
    q = BCM(**SMALL)
    q.start(2)
    back = q.decode_segment(words, [len(r) for r in rows])
    assert [b.tobytes() for b in back] == [r.tobytes() for r in rows]
    for bad in (b"\xff\xff\xff\x00" + words[4:], b"\x03\x00\x00\x00" + words[4:], words[:3]):
        q = BCM(**SMALL)
        q.start(2)
        with pytest.raises(FormatError, match="bcm segment"):
            q.decode_segment(bad, [len(r) for r in rows])


def test_level_1_splits_large_inputs_in_two_streams_and_level_2_does_not():
    pred = build_predictor(levels.get(1).spec)
    lim = registry.stream_limits(pred)
    assert levels.streams_for(levels.get(1), 3 << 20, lim.min_stream_len, lim.max_streams) == 2
    assert levels.streams_for(levels.get(1), 1 << 20, lim.min_stream_len, lim.max_streams) == 1
    pred2 = build_predictor(levels.get(2).spec)
    assert pred2.identity.name == "bcm"
    lim2 = registry.stream_limits(pred2)
    assert levels.streams_for(levels.get(2), 4 << 20, lim2.min_stream_len, lim2.max_streams) == 1


def test_info_names_the_coder_bcm_uses(tmp_path):
    from click.testing import CliRunner

    from nncompress.cli import main
    f = tmp_path / "a.nnc"
    f.write_bytes(api.compress(b"some text " * 50, level=1))
    r = CliRunner().invoke(main, ["info", str(f)])
    assert r.exit_code == 0, r.output
    assert "bcm's own binary arithmetic coder" in r.output and "constriction" not in r.output
    assert "level            -1" in r.output
