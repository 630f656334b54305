"""bmix: the binary context-mixing stage that codes its own bits over a wrapped predictor."""
import io

import numpy as np
import pytest

import nncompress
from nncompress import engine
from nncompress.errors import FormatError, ModelError, NNCError
from nncompress.predictors import bmix, registry
from nncompress.predictors.spec import build_predictor
from helpers import decode_with as _decode

SMALL = "ctx1+bmix[hash_bits=12,match_bits=12]"


def _texts():
    rng = np.random.default_rng(7)
    words = [b"the", b"quick", b"brown", b"fox", b"\xd0\xbb\xd0\xb8\xd1\x81", b"<tag a=1>",
             b"</tag>", b"42", b"\n"]
    prose = b" ".join(words[i] for i in rng.integers(0, len(words), 5000))
    return {
        "prose": prose,
        "random": rng.integers(0, 256, 12000, dtype=np.uint8).tobytes(),
        "zeros": bytes(20000),
        "one": b"x",
        "repeated": (b"a line that repeats across the streams, " * 40)[:1501] * 7,
    }


def _encode(data, pred, streams=1, seg_steps=None):
    out = io.BytesIO()
    engine.encode(io.BytesIO(data), len(data), out, pred, streams, seg_steps)
    return out.getvalue()


@pytest.mark.parametrize("name", list(_texts()))
@pytest.mark.parametrize("streams,seg", [(1, None), (5, 333), (16, None)])
def test_round_trip(name, streams, seg):
    data = _texts()[name]
    streams = min(streams, len(data))
    blob = _encode(data, build_predictor(SMALL), streams, seg)
    assert _decode(blob, build_predictor(SMALL)) == data
    assert nncompress.decompress(blob) == data


def _docs() -> bytes:
    """Real text: the project's own documentation, 60 KB."""
    from helpers import ROOT
    return b"".join(p.read_bytes() for p in sorted((ROOT / "docs").glob("*.md")))[:60000]


def test_the_stage_beats_what_it_wraps_and_records_its_tag():
    """Over order 0 its own contexts do the work (measured: 20,252 bytes against 37,582); over
    ctx1 it still gains (17,964 against 19,170)."""
    data = _docs()
    for inner, ratio in (("order0", 0.6), ("ctx1", 0.97)):
        plain = nncompress.compress(data, model=inner, streams=4)
        staged = nncompress.compress(data, model=f"{inner}+bmix[hash_bits=12,match_bits=12]",
                                     streams=4)
        assert len(staged) < ratio * len(plain)
        h = nncompress.read_header(io.BytesIO(staged))
        assert h.predictor_name == "bmix" and h.settings["arith"] == bmix.ARITH
        assert h.settings["inner"]["name"] == inner


def test_matches_across_streams_are_used():
    """A text whose second half repeats its first: with two streams the second stream's bytes
    are predicted from the first stream's, so it codes to far less than twice one half."""
    rng = np.random.default_rng(3)
    half = rng.integers(0, 256, 6000, dtype=np.uint8).tobytes()
    one = len(nncompress.compress(half, model=SMALL, streams=1))
    two = len(nncompress.compress(half + half, model=SMALL, streams=2))
    assert two < 1.2 * one


def test_same_bytes_for_the_same_input_and_other_bytes_for_other_settings():
    data = _texts()["prose"]
    a = nncompress.compress(data, model=SMALL, streams=3)
    assert nncompress.compress(data, model=SMALL, streams=3) == a
    b = nncompress.compress(data, model="ctx1+bmix[hash_bits=12,match_bits=12,lr=9]",
                            streams=3)
    assert b != a and nncompress.decompress(b) == data


def test_damaged_segments_are_refused():
    data = _texts()["prose"]
    blob = bytearray(_encode(data, build_predictor(SMALL), 4))
    for at in (len(blob) // 3, len(blob) // 2, len(blob) - 60):
        bad = bytearray(blob)
        bad[at] ^= 0x40
        with pytest.raises(NNCError):
            _decode(bytes(bad), build_predictor(SMALL))


def test_settings_are_checked_before_anything_is_built():
    with pytest.raises(ModelError):
        build_predictor("ctx1+bmix[hash_bits=30]")
    with pytest.raises(ModelError):
        build_predictor("ctx1+bmix[colour=1]")
    h = nncompress.read_header(io.BytesIO(nncompress.compress(b"abc" * 50, model=SMALL)))
    node = registry.check_header(h.predictor_name, h.model_sha256, h.settings)
    assert node.children[0].name == "ctx1" and node.settings["hash_bits"] == 12
    for bad in ({"hash_bits": 25}, {"lr": 0}, {"arith": "bmix-v0"}):
        with pytest.raises(ModelError):
            registry.check_header(h.predictor_name, h.model_sha256, {**h.settings, **bad})


def test_the_stage_refuses_steps_outside_its_layout():
    pred = build_predictor(SMALL)
    with pytest.raises(RuntimeError):
        pred.start(2)                       # no layout yet
    pred.layout([10, 10])
    w = pred.start(2)
    pred.begin_segment()
    with pytest.raises(ValueError):
        pred.encode_step(10, np.zeros(2, dtype=np.int64), w)


def test_a_truncated_message_is_refused():
    pred = build_predictor(SMALL)
    data = _texts()["random"][:3000]
    pred.layout([len(data)])
    w = pred.start(1)
    pred.begin_segment()
    for t, c in enumerate(data):
        pred.encode_step(t, np.array([c]), w)
        w = pred.step(np.array([c]))
    words = pred.end_segment()
    dec = build_predictor(SMALL)
    dec.layout([len(data)])
    w = dec.start(1)
    dec.begin_segment(words[:len(words) // 2])
    with pytest.raises(FormatError):
        for t in range(len(data)):
            s = dec.decode_step(t, w)
            w = dec.step(s)
        dec.end_segment()


def test_info_names_the_stage_and_its_coder(tmp_path):
    from click.testing import CliRunner

    from nncompress.cli import main
    f = tmp_path / "a.nnc"
    f.write_bytes(nncompress.compress(b"some text " * 50, level=3))
    r = CliRunner().invoke(main, ["info", str(f)])
    assert r.exit_code == 0, r.output
    assert "bmix's own binary arithmetic coder" in r.output and "constriction" not in r.output
    assert "level            -3" in r.output and "bmix" in r.output


def test_headers_that_wrap_or_mix_bmix_are_refused_before_anything_is_built():
    from nncompress.predictors.base import stage_identity
    from nncompress.predictors.mix import GeoMixture
    staged = build_predictor(SMALL)
    ident = stage_identity("match", staged, {"arith": "match-sse-v1"})
    with pytest.raises(registry.SettingsError, match="final stage"):
        registry.check(ident.name, ident.model_sha256, ident.settings)
    mixed = GeoMixture([staged, build_predictor("ctx1")]).identity
    with pytest.raises(registry.SettingsError, match="final stage"):
        registry.check(mixed.name, mixed.model_sha256, mixed.settings)
    with pytest.raises(ModelError, match="codes its own segments"):
        nncompress.compress(b"some text", model="bcm+bmix")


@pytest.mark.parametrize("arith", bmix.ARITHS)
def test_every_arithmetic_round_trips_from_its_header(arith):
    """New files get the newest arithmetic; a header's tag rebuilds the shape it names (the
    golden files pin the bits of each)."""
    data = _texts()["prose"][:6000]
    inner = build_predictor("ctx1")
    stage = bmix.BMixStage(inner, arith=arith, hash_bits=12, match_bits=12)
    assert stage.identity.settings["arith"] == arith
    blob = _encode(data, stage, 3)
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.settings["arith"] == arith
    assert nncompress.decompress(blob) == data


def test_the_arithmetics_differ_and_the_newest_is_the_default():
    data = _docs()[:30000]
    sizes = {}
    for arith in bmix.ARITHS:
        stage = bmix.BMixStage(build_predictor("ctx1"), arith=arith)
        sizes[arith] = len(_encode(data, stage, 4))
    assert sizes[bmix.ARITH_V1] != sizes[bmix.ARITH_V2]
    assert build_predictor("ctx1+bmix").identity.settings["arith"] == bmix.ARITH_V2 == bmix.ARITH
    with pytest.raises(ValueError, match="arithmetic"):
        bmix.BMixStage(build_predictor("ctx1"), arith="bmix-v9")
