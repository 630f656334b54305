"""Hostile and broken input: forged headers and records with valid CRCs, API misuse, and the
command line's file semantics (exit status, one line on stderr, nothing left behind).

The fuzzing tests forge structurally valid files (correct CRCs, every format version that still
decodes, starting from the golden files) and run a few examples each by default;
NNCOMPRESS_FUZZ_EXAMPLES=N runs N per test instead."""
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import nncompress
from nncompress import api
from nncompress.predictors import modelfiles, registry, spec as specs
from nncompress.format import container, limits
from nncompress.errors import FormatError, ModelError, NNCError

DATA = Path(__file__).with_name("data")
GOLDEN = sorted(p.name for p in DATA.glob("golden-*.nnc"))
TEXT = (DATA / "golden.txt").read_bytes()
EXAMPLES = int(os.environ.get("NNCOMPRESS_FUZZ_EXAMPLES", "0"))
NET = "this .nnc data cannot be decoded ("   # api's last-resort conversion to FormatError


def fuzz(default: int):
    return settings(max_examples=EXAMPLES or default, deadline=None, derandomize=not EXAMPLES,
                    suppress_health_check=list(HealthCheck), database=None)


# ---------------------------------------------------------------- forging

def forge_header(version=4, length=575, n_streams=1, segment_steps=1 << 20, name=b"order0",
                 sha=bytes(32), settings=b'{"limit":65536}', flags=0, coder=1, precision=24):
    """A header with any field values and a correct CRC (container.pack_header refuses most of
    them); `settings` is the raw JSON text, compressed as the version does."""
    blob = settings
    if version >= 2:
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY,
                             container.ZDICTS[version])
        blob = c.compress(settings) + c.flush()
    if isinstance(name, str):
        name = name.encode("utf-8", "surrogateescape")
    body = (struct.pack("<4sHHQIIBB32sB", container.MAGIC, version, flags, length, n_streams,
                        segment_steps, coder, precision, sha, len(name))
            + name + struct.pack("<I", len(blob)) + blob)
    return body + struct.pack("<I", zlib.crc32(body))


def seg_record(n_symbols, words=b"", data_crc=0):
    return struct.pack("<cQIII", b"S", n_symbols, len(words) // 4, zlib.crc32(words),
                       data_crc) + words


def end_record(n_segments, sha=bytes(32)):
    body = struct.pack("<cI32s", b"E", n_segments, sha)
    return body + struct.pack("<I", zlib.crc32(body))


def split(blob: bytes):
    """(header, the bytes after it) of a real file."""
    src = io.BytesIO(blob)
    h = container.read_header(src)
    return h, blob[src.tell():]


def with_header(blob: bytes, **fields) -> bytes:
    """`blob` with its header rewritten (any field, raw settings JSON allowed), CRC correct."""
    h, body = split(blob)
    args = dict(version=h.version, length=h.original_length, n_streams=h.n_streams,
                segment_steps=h.segment_steps, name=h.predictor_name, sha=h.model_sha256,
                settings=container.settings_bytes(h.settings))
    args.update(fields)
    if isinstance(args["settings"], dict):
        args["settings"] = json.dumps(args["settings"], sort_keys=True).encode()
    return forge_header(**args) + body


def golden(name: str) -> bytes:
    return (DATA / name).read_bytes()


def refused(blob: bytes, exc=NNCError):
    """Decoding `blob` raises `exc` (an NNCError), not the last-resort conversion."""
    with pytest.raises(exc) as e:
        nncompress.decompress(blob)
    assert not str(e.value).startswith(NET), e.value
    return e.value


def refused_small(blob: bytes, exc=NNCError, peak_mb: int = 64):
    """Refused, and before anything large was allocated (Python and numpy allocations)."""
    tracemalloc.start()
    try:
        err = refused(blob, exc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < peak_mb << 20, (peak, err)
    return err


@pytest.fixture(scope="module")
def order0_blob():
    data = (b"Alice was beginning to get very tired of sitting by her sister. " * 40)[:2000]
    return data, nncompress.compress(data, model="order0", streams=3, segment_steps=200)


# ---------------------------------------------------------------- 1. names

@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", ".hidden", "x" * 101,
                                  "ctx1\n", "a b", "\x1b[31m", "caf\u00e9"])
def test_header_predictor_name_must_be_plain(name):
    blob = forge_header(name=name) + end_record(0)
    err = refused_small(blob, FormatError)
    assert "plain name" in str(err) or "corrupt" in str(err)


@pytest.mark.parametrize("member", ["../x", "/etc/passwd", "../../models/fslstm-small-v3", 7])
def test_member_name_is_never_used_as_a_path(member, monkeypatch):
    """A forged ensemble (or stage) naming a path is refused before any file is hashed or read."""
    def no_files(*a, **k):
        raise AssertionError("a model file was looked at")
    monkeypatch.setattr(modelfiles, "file_sha256", no_files)
    monkeypatch.setattr(modelfiles, "_ref_for_file", no_files)
    h, body = split(golden("golden-v4-default-v6.nnc"))
    s = json.loads(container.settings_bytes(h.settings))
    s["inner"]["settings"]["members"][0]["name"] = member
    err = refused_small(with_header(golden("golden-v4-default-v6.nnc"), settings=s), ModelError)
    assert "plain name" in str(err)
    s = json.loads(container.settings_bytes(h.settings))
    s["inner"]["name"] = member
    refused_small(with_header(golden("golden-v4-default-v6.nnc"), settings=s), ModelError)


def test_ref_for_header_refuses_paths():
    for name in ("../x", "/etc/passwd", "sub/dir"):
        with pytest.raises(ModelError, match="plain"):
            modelfiles.ref_for_header(name, b"\1" * 32)


def test_plain_names():
    for ok in ("fslstm-small-v3", "ctx1", "a.b_c-d", "A" * limits.MAX_NAME):
        assert limits.plain_name(ok)
    for bad in ("", ".x", "a/b", "a\\b", "a\0", "A" * (limits.MAX_NAME + 1), None, 3, "é"):
        assert not limits.plain_name(bad)


# ---------------------------------------------------------------- 2. ranges before allocation

@pytest.mark.parametrize("fields", [
    dict(length=(1 << 64) - 1, n_streams=(1 << 32) - 1),                 # billions of streams
    dict(length=1 << 40, n_streams=limits.MAX_STREAMS + 1),
    dict(length=1 << 40, n_streams=1, segment_steps=(1 << 32) - 1),     # a 4 GB segment
    dict(length=1 << 40, n_streams=4096, segment_steps=1 << 20),
    dict(length=1 << 40, n_streams=1, segment_steps=1 << 16),           # more than the file holds
    dict(length=10 ** 9, n_streams=64, segment_steps=1 << 12),
])
def test_stream_layout_is_bounded_by_the_limits_and_the_file_size(fields):
    blob = forge_header(**fields) + seg_record(5, b"\0" * 4) + end_record(1)
    refused_small(blob, FormatError)


def test_segment_symbol_count_is_bounded_by_its_words():
    """A segment claiming more bytes than its words can code is refused before decoding."""
    n = limits.MAX_SEGMENT_SYMBOLS
    head = forge_header(length=n, n_streams=1, segment_steps=n)
    body = seg_record(n, b"") + b"\0" * (4 * 16) + end_record(1)  # room, but zero words
    # the engine's arrays for one segment (about 17 bytes a step) are all it allocates
    err = refused_small(head + body, FormatError, peak_mb=96)
    assert "word count" in str(err)


def test_min_words_holds_for_the_most_predictable_data():
    """min_words is a true bound: the coder's output for a maximally predictable segment."""
    import numpy as np
    from nncompress.format import coding
    freq = np.ones((1 << 16, 256), dtype=np.int64)
    freq[:, 0] = coding.TOTAL - 255
    for n in (1, 1000, 3 * limits.SYMBOLS_PER_WORD + 5):   # the last needs 2 words at least
        enc = coding.SegmentEncoder()
        for lo in range(0, n, len(freq)):
            k = min(len(freq), n - lo)
            enc.encode(np.zeros(k, dtype=np.int64), freq[:k])
        assert len(enc.finish()) >= limits.min_words(n) >= 1
    assert limits.min_words(10 * limits.SYMBOLS_PER_WORD) == 9 and limits.min_words(0) == 0


@pytest.mark.parametrize("settings", [
    b'{"limit":Infinity}', b'{"limit":NaN}', b'{"limit":-Infinity}', b'{"limit":1e400}',
    b'{"limit":' + b"9" * 5000 + b"}", b'{"limit":100000000000000000000}',
    b"[" * 100000 + b"]" * 100000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"[]", b'"x"', b"1",
    b'{"limit":1', b"\xff\xfe", b'{"a":"' + b"x" * (limits.MAX_STRING + 1) + b'"}',
], ids=lambda b: repr(b[:24]))
@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_settings_json_within_limits(settings, version):
    blob = forge_header(version=version, settings=settings) + end_record(0)
    refused_small(blob, FormatError)


def _default_settings():
    h, _ = split(golden("golden-v4-default-v6.nnc"))
    return json.loads(container.settings_bytes(h.settings))


def _forged_default(edit) -> bytes:
    s = _default_settings()
    edit(s)
    return with_header(golden("golden-v4-default-v6.nnc"), settings=s)


def _fslstm(s):
    return s["inner"]["settings"]["members"][0]


@pytest.mark.parametrize("edit", [
    lambda s: s.update(hash_bits=24),                                     # 10 GiB of cm tables
    lambda s: s.update(match_bits=30),
    lambda s: s["inner"]["settings"]["members"][1]["settings"].update(hash_bits=22),
    lambda s: s["inner"]["settings"]["members"].extend(
        [s["inner"]["settings"]["members"][1]] * 3000),                     # thousands of members
    lambda s: s["inner"]["settings"]["members"].clear(),
    lambda s: s["inner"]["settings"].update(share=-1),
    lambda s: s["inner"]["settings"].update(share="5"),
    lambda s: s["inner"]["settings"].update(lr_shift=10 ** 12),
    lambda s: s["inner"]["settings"].update(members="x"),
    lambda s: s.update(inner=[]),
    lambda s: s.update(inner={"name": "cm", "sha256": "00" * 32,
                              "settings": json.loads(json.dumps(s))}),
    lambda s: _fslstm(s)["settings"]["dyneval"].update(segment="8"),      # wrongly typed
    lambda s: _fslstm(s)["settings"]["dyneval"].update(segment=True),
    lambda s: _fslstm(s)["settings"]["dyneval"].update(segment=10 ** 9),
    lambda s: _fslstm(s)["settings"]["dyneval"].update(segment=2000),     # full: at most 1024
    lambda s: _fslstm(s)["settings"]["dyneval"].update(lr=[1]),
    lambda s: _fslstm(s)["settings"]["dyneval"].update(lr=1e300),
    lambda s: _fslstm(s)["settings"]["dyneval"].update(eps=0),
    lambda s: _fslstm(s)["settings"]["dyneval"].update(decay=-1),
    lambda s: _fslstm(s)["settings"].update(dyneval="full"),
    lambda s: _fslstm(s)["settings"].update(dyneval=None),
    lambda s: _fslstm(s)["settings"]["dyneval"].pop("lr"),
    lambda s: _fslstm(s).update(sha256="zz" * 32),
    lambda s: _fslstm(s).update(sha256="00"),
    lambda s: _fslstm(s).update(settings=[]),
])
def test_forged_default_settings_are_refused_before_building(edit, monkeypatch):
    """Forged settings in today's default's header (valid CRCs): refused, nothing allocated, no
    model file read."""
    monkeypatch.setattr(registry, "rebuild",
                        lambda *a, **k: pytest.fail("a predictor was built"))
    refused_small(_forged_default(edit), ModelError)


def test_nesting_depth_is_capped(monkeypatch):
    """Stages nested fifty deep (identities consistent, so only the depth limit refuses them)."""
    from nncompress.predictors.base import stage_sha256
    monkeypatch.setattr(registry, "rebuild",
                        lambda *a, **k: pytest.fail("a predictor was built"))
    name, sha, settings = "order0", bytes(32), {"limit": 65536}
    for _ in range(50):
        settings = {"arith": "match-sse-v1", "hash_bits": 20, "min_len": 6, "rate": 7,
                    "verify": 32, "inner": {"name": name, "sha256": sha.hex(),
                                            "settings": settings}}
        name, sha = "match", stage_sha256("match", name, sha)
    blob = forge_header(name=name, sha=sha, settings=container.settings_bytes(settings))
    refused_small(blob + end_record(0), NNCError)


def test_full_dynamic_evaluation_stream_cap_on_decode(monkeypatch):
    """A header of the default with more streams than full dynamic evaluation can code."""
    monkeypatch.setattr(registry, "rebuild",
                        lambda *a, **k: pytest.fail("a predictor was built"))
    blob = with_header(golden("golden-v4-default-v6.nnc"), length=3000, n_streams=300,
                       segment_steps=1)
    refused_small(blob + b"\0" * 50000, FormatError)


def test_writer_keeps_to_the_limits():
    with pytest.raises(ValueError, match="at most 256 streams"):   # full dynamic evaluation's cap
        api.check_streams(specs.build_predictor("fslstm-small-v3+ctx2+cm:de-full", device="cpu"),
                          10 ** 6, 300)
    with pytest.raises(ValueError, match="streams"):
        nncompress.compress(b"x" * (30 * (limits.MAX_STREAMS + 1)), model="order0",
                            streams=limits.MAX_STREAMS + 1)
    assert nncompress.info(io.BytesIO(nncompress.compress(b"x" * 100, model="order0",
                                                          streams=10 ** 9))).header.n_streams <= 100
    with pytest.raises(ValueError, match="segment"):
        nncompress.compress(b"x" * 100, model="order0", segment_steps=0)
    with pytest.raises(ModelError, match="at most"):
        specs.build_predictor("ctx1+order0+ctx1+order0+ctx1")
    from nncompress.predictors.context import ContextModel
    from nncompress.predictors.cm import CMStage
    with pytest.raises(ModelError, match="hash_bits"):
        api.compress_stream(io.BytesIO(b"x"), io.BytesIO(),
                            predictor=CMStage(ContextModel("ctx1"), hash_bits=24))


def test_stream_limits_follow_the_predictors():
    """Full dynamic evaluation caps the stream count at what its backward pass keeps."""
    from nncompress.predictors.fslstm import backward
    h, _ = split(golden("golden-v4-default-v6.nnc"))
    node = registry.check_header(h.predictor_name, h.model_sha256, h.settings)
    assert node.stream_limits().cap == backward.MAX_STREAMS
    assert registry.check_header("ctx1", bytes(32), {}).stream_limits().cap == limits.MAX_STREAMS
    assert sorted(registry.builtin_names()) == ["bcm", "ctx1", "ctx2", "order0"]
    assert registry.check_header("bcm", bytes(32), {"arith": "bcm-v1"}).stream_limits().cap == 2
    assert sorted(registry.stage_names()) == ["bmix", "cm", "match"]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_files_are_within_the_limits(name):
    h, body = split(golden(name))
    registry.check_header(h.predictor_name, h.model_sha256, h.settings)
    container.check_body_size(h, len(body))
    assert limits.layout_problem(h.original_length, h.n_streams, h.segment_steps) is None


# ---------------------------------------------------------------- 4. API

@pytest.mark.parametrize("bad", [5, 0, "text", None, 1.5, [1, 2], {"a": 1}, object()])
def test_api_takes_bytes_like_objects_only(bad):
    with pytest.raises(TypeError):
        nncompress.compress(bad, model="order0")
    with pytest.raises(TypeError):
        nncompress.decompress(bad)
    with pytest.raises(TypeError):
        nncompress.cross_entropy(bad, model="order0")


def test_api_accepts_bytes_like_objects():
    import array
    for data in (bytearray(b"abc"), memoryview(b"abc"), array.array("B", b"abc")):
        blob = nncompress.compress(data, model="order0")
        assert nncompress.decompress(bytearray(blob)) == b"abc"
        assert nncompress.decompress(memoryview(blob)) == b"abc"


@pytest.mark.parametrize("records", [
    lambda n: seg_record(n, b"\1\2\3\4", 0) + end_record(1),       # words that decode wrongly
    lambda n: seg_record(n + 1, b"\1\2\3\4") + end_record(1),
    lambda n: seg_record(n, b"\0" * 4000) + end_record(1),
    lambda n: end_record(0),
    lambda n: seg_record(n, b"\xff" * 8) + end_record(2),
    lambda n: seg_record(n, b"\xff" * 8) + end_record(1) + b"x",
    lambda n: seg_record(n, b"\xff" * 8) + b"Q" * 41,
    lambda n: seg_record(n, b"\xff" * 8),
])
def test_forged_records_are_refused(records):
    blob = forge_header(length=300, n_streams=1, segment_steps=1000) + records(300)
    refused(blob)


# ---------------------------------------------------------------- 5. fuzzing

HOSTILE = st.one_of(
    st.integers(-(1 << 70), 1 << 70), st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 63, 2 ** 64]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(max_size=8), st.sampled_from(["../x", "/etc/passwd", "de-full-v1", "cm-v1", "00" * 32]),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                             max_size=2))


def _slots(obj, out=None):
    """Every (container, key) of a JSON value, depth first."""
    out = [] if out is None else out
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.append((obj, k))
        _slots(v, out)
    return out


FIELD = st.one_of(st.integers(0, 8), st.sampled_from([255, 256, 4096, 4097, 1 << 20, 1 << 24]),
                  st.integers(0, (1 << 32) - 1))


MODEL_FREE = [n for n in GOLDEN if split(golden(n))[0].model_sha256 == bytes(32)]


@st.composite
def forged_golden(draw, names=tuple(GOLDEN)):
    """A golden file (each format version) with forged header fields and settings and, sometimes,
    forged records; every CRC correct."""
    name = draw(st.sampled_from(names))
    blob = golden(name)
    h, body = split(blob)
    s = json.loads(container.settings_bytes(h.settings))
    fields = {}
    for _ in range(draw(st.integers(0, 3))):
        slots = _slots(s)
        if not slots:
            break
        parent, key = slots[draw(st.integers(0, len(slots) - 1))]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = draw(HOSTILE)
    fields["settings"] = json.dumps(s, sort_keys=True, allow_nan=True).encode()
    if draw(st.booleans()):
        which = draw(st.sampled_from(["length", "n_streams", "segment_steps", "version"]))
        v = draw(st.integers(0, (1 << 64) - 1) if which == "length" else FIELD)
        fields[which] = v if which != "version" else draw(st.sampled_from([1, 2, 3, 4]))
    if draw(st.booleans()):
        fields["name"] = draw(st.sampled_from(["order0", "ctx1", "ctx2", "mix", "gmix", "match",
                                               "cm", "fslstm-small-v3", "../x", "/etc/passwd"]))
    if draw(st.booleans()):
        fields["sha"] = draw(st.sampled_from([bytes(32), h.model_sha256, b"\xff" * 32]))
    forged = with_header(blob, **fields)
    if draw(st.booleans()):   # forged records after the header
        n = draw(st.integers(0, 1 << 12))
        words = draw(st.binary(max_size=64))
        words = words[: len(words) // 4 * 4]
        recs = seg_record(n, words, draw(st.integers(0, (1 << 32) - 1)))
        recs += end_record(draw(st.integers(0, 3)), draw(st.binary(min_size=32, max_size=32)))
        head = forged[: len(forged) - len(body)]
        forged = head + recs[: draw(st.integers(0, len(recs)))]
    return forged


def _refused_or_the_golden_text(blob):
    """A forged header is refused with an NNCError of its own (never the last-resort net), or it
    still describes the golden file and decodes to its text."""
    try:
        out = nncompress.decompress(blob)
    except NNCError as e:
        assert not str(e).startswith(NET), e
        return
    assert out == TEXT


@fuzz(default=40)
@given(forged_golden(MODEL_FREE))
def test_fuzz_forged_golden_headers_model_free(blob):
    _refused_or_the_golden_text(blob)


@fuzz(default=8)   # a header that passes every check loads the FS-LSTM and decodes: seconds
@given(forged_golden())
def test_fuzz_forged_golden_headers(blob):
    _refused_or_the_golden_text(blob)


@fuzz(default=60)
@given(st.data())
def test_fuzz_forged_records(order0_blob, data):
    """A real 3-stream file with forged records (symbol counts, words, CRCs, end record), every CRC
    correct; or forged stream layouts over the real records."""
    text, blob = order0_blob
    h, body = split(blob)
    if data.draw(st.booleans()):
        head = with_header(blob, length=data.draw(st.integers(0, 1 << 16)),
                           n_streams=data.draw(st.integers(0, 16)),
                           segment_steps=data.draw(st.integers(0, 1 << 12)))
        forged = head[: len(head) - len(body)] + body
    else:
        recs, k = [], 0
        for _ in range(data.draw(st.integers(0, 4))):
            n = data.draw(st.sampled_from([1, 199, 200, 599, 600, 601, 2000, 1 << 20]))
            w = data.draw(st.binary(max_size=48))
            recs.append(seg_record(n, w[: len(w) // 4 * 4], data.draw(st.integers(0, 2 ** 32 - 1))))
        recs.append(end_record(data.draw(st.integers(0, 12)), container.sha256_of(io.BytesIO(text), len(text))))
        forged = blob[: len(blob) - len(body)] + b"".join(recs)
    try:
        out = nncompress.decompress(forged)
    except NNCError as e:
        assert not str(e).startswith(NET), e
        return
    assert out == text


@fuzz(default=40)
@given(version=st.sampled_from([1, 2, 3, 4]), name=st.sampled_from(["order0", "ctx1", "cm", "gmix", "match"]),
       settings=st.recursive(HOSTILE, lambda c: st.one_of(st.lists(c, max_size=3),
                                                          st.dictionaries(st.sampled_from(
                                                              ["inner", "members", "name", "sha256",
                                                               "settings", "limit", "hash_bits",
                                                               "arith", "share"]), c, max_size=4)),
                              max_leaves=12),
       length=st.integers(0, 5000), streams=st.integers(1, 8), seg=st.integers(1, 5000))
def test_fuzz_forged_headers_from_scratch(version, name, settings, length, streams, seg):
    sha = bytes(32) if name in ("order0", "ctx1") else b"\x01" * 32
    blob = forge_header(version=version, length=length, n_streams=streams, segment_steps=seg,
                        name=name, sha=sha,
                        settings=json.dumps(settings, allow_nan=True).encode())
    blob += seg_record(min(length, streams * seg), b"\0\0\0\0") + end_record(1)
    try:
        nncompress.decompress(blob)
    except NNCError as e:
        assert not str(e).startswith(NET), e
        return
    pytest.fail("a forged file decoded")   # its records cannot match any header


# ---------------------------------------------------------------- 3. the command line

def run_cli(*args, input=None, cwd=None, stdout=subprocess.PIPE, **kw):
    p = subprocess.run([sys.executable, "-m", "nncompress", *args], input=input, stdout=stdout,
                       stderr=subprocess.PIPE, timeout=300, cwd=cwd, **kw)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def one_line(err: str) -> None:
    assert err.startswith("nncompress: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "\x1b" not in err


@pytest.fixture
def work(tmp_path):
    (tmp_path / "a.txt").write_bytes(TEXT * 4)
    return tmp_path


def listing(d: Path) -> list:
    return sorted(p.name for p in d.iterdir())


def test_force_never_replaces_a_non_regular_file(work):
    assert run_cli("c", "-m", "order0", str(work / "a.txt"))[0] == 0
    for target in ("/dev/null", str(work)):
        code, _, err = run_cli("d", "-f", str(work / "a.txt.nnc"), target)
        assert code == 1, err
        one_line(err)
        assert "not a regular file" in err
    (work / "sub").mkdir()
    code, _, err = run_cli("c", "-f", "-m", "order0", str(work / "a.txt"), str(work / "sub"))
    assert code == 1 and (work / "sub").is_dir()
    one_line(err)
    assert listing(work) == ["a.txt", "a.txt.nnc", "sub"] and not list((work / "sub").iterdir())
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_leave_nothing_behind(tmp_path, sig):
    big = tmp_path / "big.txt"
    big.write_bytes(TEXT * 40000)   # 23 MB: seconds of work for order0
    p = subprocess.Popen([sys.executable, "-m", "nncompress", "c", "-m", "order0", str(big)],
                         stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not any(f.name.endswith(".tmp") for f in tmp_path.iterdir()):
        time.sleep(0.05)
    assert any(f.name.endswith(".tmp") for f in tmp_path.iterdir()), "no temporary output seen"
    p.send_signal(sig)
    err = p.communicate(timeout=60)[1].decode()
    assert p.returncode == 128 + sig, err
    one_line(err)
    assert listing(tmp_path) == ["big.txt"]


def test_broken_pipe_is_exit_1_and_one_line(tmp_path):
    src = tmp_path / "x"
    src.write_bytes(TEXT * 2000)    # 1.1 MB out: more than a pipe holds
    assert run_cli("c", "-m", "order0", str(src))[0] == 0
    p = subprocess.Popen([sys.executable, "-m", "nncompress", "d", "-c", str(tmp_path / "x.nnc")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(p.stdout.read(10)) == 10
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1, err
    one_line(err)
    assert "broken pipe" in err.lower()
    assert listing(tmp_path) == ["x", "x.nnc"]


def test_broken_pipe_into_head_is_exit_1(tmp_path):
    """`nncompress d -c x.nnc | head -c 10`: the reader leaves after a partial write of a large
    chunk; that must still end in exit 1 and one line, not a silent exit 0."""
    import shutil
    if not shutil.which("head"):
        pytest.skip("no head command")
    src = tmp_path / "x"
    src.write_bytes((TEXT * 2000)[:500_000])    # one write of less than the 1 MiB copy chunk
    assert run_cli("c", "-m", "order0", str(src))[0] == 0
    p = subprocess.Popen([sys.executable, "-m", "nncompress", "d", "-c", str(tmp_path / "x.nnc")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h = subprocess.Popen(["head", "-c", "10"], stdin=p.stdout, stdout=subprocess.DEVNULL)
    p.stdout.close()
    h.wait(timeout=120)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1, err
    one_line(err)
    assert "broken pipe" in err.lower()


def test_closed_stdout_is_one_line(work):
    code, _, err = run_cli("c", "-m", "order0", "-c", str(work / "a.txt"), stdout=None,
                           pass_fds=(), preexec_fn=lambda: os.close(1))
    assert code == 1, err
    one_line(err)


@pytest.mark.parametrize("cmd", [["c", "-m", "order0"], ["d"], ["t"], ["info"]])
def test_missing_input_is_exit_1_and_one_line(work, cmd):
    code, _, err = run_cli(*cmd, str(work / "missing.nnc"))
    assert code == 1, err
    one_line(err)
    assert "No such file" in err and "missing.nnc" in err
    assert listing(work) == ["a.txt"]


def test_directory_input_is_exit_1(work):
    code, _, err = run_cli("c", "-m", "order0", str(work))
    assert code == 1
    one_line(err)
    assert listing(work) == ["a.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_input_is_exit_1(work):
    (work / "a.txt").chmod(0)
    code, _, err = run_cli("c", "-m", "order0", str(work / "a.txt"))
    assert code == 1
    one_line(err)
    assert listing(work) == ["a.txt"]


def test_compressing_a_name_with_the_suffix_is_refused_without_force(work):
    assert run_cli("c", "-m", "order0", str(work / "a.txt"))[0] == 0
    code, _, err = run_cli("c", "-m", "order0", str(work / "a.txt.nnc"))
    assert code == 2
    one_line(err)
    assert "suffix" in err
    assert listing(work) == ["a.txt", "a.txt.nnc"]
    assert run_cli("c", "-f", "-m", "order0", str(work / "a.txt.nnc"))[0] == 0
    assert listing(work) == ["a.txt", "a.txt.nnc", "a.txt.nnc.nnc"]


def test_names_up_to_the_file_system_limit(tmp_path):
    name = "n" * (255 - len(".nnc"))
    (tmp_path / name).write_bytes(TEXT)
    code, _, err = run_cli("c", "-m", "order0", name, cwd=tmp_path)
    assert code == 0, err
    (tmp_path / name).unlink()
    code, _, err = run_cli("d", name + ".nnc", cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / name).read_bytes() == TEXT
    long = "m" * 253
    (tmp_path / long).write_bytes(TEXT)
    code, _, err = run_cli("c", "-m", "order0", long, cwd=tmp_path)   # long.nnc is 257 bytes
    assert code == 1
    one_line(err)
    assert listing(tmp_path) == sorted([name, name + ".nnc", long])


def test_names_are_escaped(tmp_path):
    evil = "a\nnncompress: fake line \x1b[2J\u202e"
    code, _, err = run_cli("d", evil + ".nnc", cwd=tmp_path)
    assert code == 1
    one_line(err)
    assert "\\n" in err and "\\x1b" in err and "\\u202e" in err
    (tmp_path / evil).write_bytes(TEXT)
    code, _, err = run_cli("c", "-v", "-m", "order0", evil, cwd=tmp_path)
    assert code == 0 and err.count("\n") == 1 and "\x1b" not in err and "\\n" in err
    code, out, err = run_cli("info", evil + ".nnc", cwd=tmp_path)
    assert code == 0 and b"\x1b" not in out and b"\\x1b" in out


def test_header_strings_are_escaped_by_info(tmp_path):
    blob = nncompress.compress(b"abc", model="order0")
    f = tmp_path / "x.nnc"
    f.write_bytes(with_header(blob, settings={"limit": 65536, "note": "\x1b[31m\u009b\u2028"}))
    code, out, err = run_cli("info", str(f))
    assert code == 0, err
    text = out.decode()
    assert "\x1b" not in text and "\u009b" not in text and "\u2028" not in text
    assert ("\\x1b" in text or "\\u001b" in text) and "\\x9b" in text and "\\u2028" in text


def test_usage_errors_are_one_line(work):
    for args in (["c"], ["c", "--device", "tpu", "a.txt"], ["c", "--streams", "0", "a.txt"],
                 ["c", "--streams", str(1 << 20), "a.txt"], ["d", "a.txt"], ["c", "--bogus"]):
        code, _, err = run_cli(*args, cwd=work)
        assert code == 2, (args, err)
        one_line(err)
    assert listing(work) == ["a.txt"]


def test_too_many_streams_for_full_dynamic_evaluation_is_a_usage_error(work):
    code, _, err = run_cli("c", "-8", "--streams", "300", "a.txt", cwd=work)
    assert code == 2, err
    one_line(err)
    assert "256" in err
    assert listing(work) == ["a.txt"]


def test_forged_file_through_the_cli(work):
    bad = work / "bad.nnc"
    bad.write_bytes(forge_header(length=(1 << 64) - 1, n_streams=(1 << 32) - 1) + end_record(0))
    for cmd in (["d"], ["t"], ["info"]):
        code, _, err = run_cli(*cmd, str(bad))
        assert code == 1, err
        one_line(err)
    assert listing(work) == ["a.txt", "bad.nnc"]
