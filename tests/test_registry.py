"""The predictor registry and the spec grammar: a new predictor is one class and one register()
line, and then compresses, decompresses and is checked like the built-in ones."""
import dataclasses
import io

import numpy as np
import pytest

import nncompress
from nncompress import levels
from nncompress.errors import ModelError, ModelMismatchError
from nncompress.format import container
from nncompress.predictors import registry, schema
from nncompress.predictors.base import PredictorIdentity, Registered
from nncompress.predictors.schema import SettingsError
from nncompress.predictors.spec import DEFAULT_SPEC, Spec, ensemble, parse_spec

DATA = b"a toy predictor counts bytes; a toy predictor counts bytes again. " * 20


class Toy(Registered):
    """Per-stream byte counts, each count weighing `gain`."""
    NAMES = ("toy",)
    ARITH = "toy-v1"
    SETTINGS = schema.Schema({"gain": schema.integer(1, 8, 2)})

    def __init__(self, gain: int = 2):
        cfg = self.check_settings("toy", {"gain": gain})
        self.gain = cfg["gain"]
        self.identity = PredictorIdentity("toy", settings={**cfg, "arith": self.ARITH})

    def start(self, n_streams: int) -> np.ndarray:
        self.counts = np.zeros((n_streams, 256), dtype=np.int64)
        return self.counts * self.gain + 1

    def step(self, symbols: np.ndarray) -> np.ndarray:
        a = len(symbols)
        c = self.counts[:a]
        c[np.arange(a), symbols] += 1
        return c * self.gain + 1


@pytest.fixture
def toy():
    registry.register(Toy)             # the one line a new predictor needs
    yield Toy
    registry.unregister("toy")


def _with_settings(blob: bytes, **changes) -> bytes:
    src = io.BytesIO(blob)
    h = container.read_header(src)
    h2 = dataclasses.replace(h, settings=dict(h.settings, **changes))
    return container.pack_header(h2) + blob[src.tell():]


def test_a_new_predictor_round_trips_through_the_api(toy):
    blob = nncompress.compress(DATA, model="toy", streams=2)
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.predictor_name == "toy" and h.settings == {"gain": 2, "arith": "toy-v1"}
    assert nncompress.decompress(blob) == DATA
    # in an ensemble and under a final stage, like any built-in predictor
    blob = nncompress.compress(DATA, model="toy+order0+match")
    assert nncompress.decompress(blob) == DATA


def test_the_schema_refuses_bad_header_values_and_arguments(toy):
    blob = nncompress.compress(DATA, model="toy")
    with pytest.raises(ModelMismatchError, match=r"toy predictor settings are not understood "
                                                 r"\(gain must be in 1\.\.8, not 99\)"):
        nncompress.decompress(_with_settings(blob, gain=99))
    with pytest.raises(ModelMismatchError, match="gain must be an integer"):
        nncompress.decompress(_with_settings(blob, gain="2"))
    with pytest.raises(ModelMismatchError, match="unknown settings"):
        nncompress.decompress(_with_settings(blob, colour=1))
    with pytest.raises(ModelMismatchError, match="arithmetic 'toy-v2'"):
        nncompress.decompress(_with_settings(blob, arith="toy-v2"))
    with pytest.raises(SettingsError, match="gain must be in 1..8, not 0"):
        Toy(gain=0)
    assert issubclass(SettingsError, ModelError) and issubclass(SettingsError, ValueError)


def test_an_unregistered_predictor_is_refused_by_name(toy):
    blob = nncompress.compress(DATA, model="toy")
    registry.unregister("toy")
    with pytest.raises(ModelMismatchError, match="predictor 'toy', which this version"):
        nncompress.decompress(blob)
    with pytest.raises(ModelError, match="cannot be written"):
        nncompress.compress_stream(io.BytesIO(DATA), io.BytesIO(), predictor=Toy())


def test_stream_limits_are_declared():
    node = registry.check_header("ctx1", bytes(32), {})
    lim = node.stream_limits()
    from nncompress.predictors.context import ContextModel
    assert (lim.min_stream_len, lim.max_streams) == (ContextModel.MIN_STREAM_LEN,
                                                     ContextModel.MAX_STREAMS)
    assert registry.check_header("order0", bytes(32), {}).settings == {"limit": 1 << 16}


# ---------------------------------------------------------------- the spec grammar

@pytest.mark.parametrize("text,spec", [
    ("ctx1", Spec(("ctx1",))),
    ("ctx1+order0", Spec(("ctx1", "order0"))),
    ("ctx2+cm", Spec(("ctx2",), "cm")),
    ("fslstm-small-v3+ctx2+cm:de-out", Spec(("fslstm-small-v3", "ctx2"), "cm", {"scope": "out"})),
    ("fslstm-small-v3:static", Spec(("fslstm-small-v3",), None, False)),
    ("fslstm-small-v3+ctx1+match:de", Spec(("fslstm-small-v3", "ctx1"), "match", True)),
    ("x.pt+ctx1:de-full", Spec(("x.pt", "ctx1"), None, {"scope": "full"})),
    ("ctx2[hash_bits=17]+cm[nibbles=1]", Spec(("ctx2[hash_bits=17]",), "cm[nibbles=1]")),
    (None, parse_spec(DEFAULT_SPEC)),
])
def test_parse_spec(text, spec):
    assert parse_spec(text) == spec
    assert parse_spec(str(spec)) == spec


def test_parse_spec_options_and_paths(tmp_path):
    assert parse_spec("ctx1+match:static", dynamic_eval={"lr": 0.1}).dynamic_eval == {"lr": 0.1}
    assert parse_spec("fslstm-small-v3:de", dynamic_eval=None).dynamic_eval is True
    odd = tmp_path / "my+model:de.pt"        # a path to a file is one member, "+" and ":" too
    odd.write_bytes(b"")
    assert parse_spec(str(odd)) == Spec((str(odd),))
    assert ensemble([" ctx1", "order0 "]) == "ctx1+order0"
    assert parse_spec("fslstm-small-v3+ctx2+cm:de-out").label == \
        "fslstm-small-v3+ctx2+cm dyn-eval out"


@pytest.mark.parametrize("text,message", [
    ("ctx1++order0", "empty member"),
    ("+ctx1", "empty member"),
    ("match+ctx1", "'match' is a final stage and can only end a spec"),
    ("ctx1+cm+order0", "'cm' is a final stage"),
    ("cm", "'cm' is a final stage"),
    ("ctx1+order0+ctx1+order0+ctx1", "at most 4 members, not 5"),
    ("ctx1:fast", r"unknown dynamic-evaluation option :fast \(known: :static, :de, :de-out, "
                  r":de-full\)"),
])
def test_bad_specs_are_refused_with_a_clear_message(text, message):
    with pytest.raises(ModelError, match=message):
        parse_spec(text)


def test_settings_in_a_spec_reach_the_header_and_are_checked():
    from nncompress.predictors.spec import split_settings
    assert split_settings("ctx2[hash_bits=17, max_order=6]") == ("ctx2", {"hash_bits": 17,
                                                                          "max_order": 6})
    assert split_settings("ctx2") == ("ctx2", {})
    data = b"settings in brackets " * 200
    blob = nncompress.compress(data, model="ctx2[hash_bits=12]+cm[nibbles=1,hash_bits=12]")
    h = nncompress.read_header(io.BytesIO(blob))
    assert h.settings["nibbles"] == 1 and h.settings["hash_bits"] == 12
    assert h.settings["inner"]["settings"]["hash_bits"] == 12
    assert nncompress.decompress(blob) == data
    assert blob != nncompress.compress(data, model="ctx2[hash_bits=13]+cm[nibbles=1,hash_bits=12]")
    for text, message in [("ctx1[foo=1]", "unknown settings"),
                          ("ctx1[hash_bits=99]", "hash_bits must be in 8..20"),
                          ("ctx1[hash_bits=x]", "settings are written NAME\\[key=integer"),
                          ("ctx1[hash_bits=12", "settings are written"),
                          ("ctx1[hash_bits=12,hash_bits=13]", "given twice"),
                          ("ctx1[limit=254,inc=5]", "limit must be in inc..255-inc"),
                          ("fslstm-small-v3[hash_bits=12]", "built-in predictors and stages only"),
                          ("ctx1+cm[nibbles=99]", "nibbles must be in")]:
        with pytest.raises(ModelError, match=message):
            nncompress.compress(b"x", model=text)


def test_spec_errors_when_building():
    with pytest.raises(ModelError, match="unknown model .no-such-model.; available: order0, ctx1, ctx2"):
        nncompress.compress(b"x", model="no-such-model")
    with pytest.raises(ModelError, match="needs an FS-LSTM"):
        nncompress.compress(b"x", model="ctx1:de")
    with pytest.raises(ModelError, match="at least two"):
        ensemble(["ctx1"])


def test_levels_are_specs():
    assert parse_spec(levels.get(6).spec) == parse_spec(DEFAULT_SPEC)
    assert parse_spec(levels.get(7).spec).dynamic_eval == {"scope": "out"}
    assert parse_spec(levels.get(8).spec).dynamic_eval == {"scope": "full"}
    # the int8 levels name the int8 model, which has no dynamic evaluation to turn on
    for lv in (4, 5, 6):
        spec = parse_spec(levels.get(lv).spec)
        assert spec.members[0] == levels.FSLSTM_I8 and spec.dynamic_eval is None
    for lv in levels.LEVELS.values():
        assert parse_spec(lv.spec).members
