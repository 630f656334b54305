"""Limits on everything a .nnc file (or a caller) can ask for, checked before anything is allocated.

A file's header chooses the predictor, its settings and the stream layout; a forged header with
valid CRCs could otherwise name any file as a model, or ask for tables, streams or segments far
larger than any file this program writes. The limits here follow from the predictors' own bounds
and from what the writer produces; the writer is held to the same limits (api.compress_stream
checks the predictor it builds with check_tree), so every file it writes passes them.

- Names: a model or predictor name in a header is a plain name (PLAIN_NAME: letters, digits,
  '.', '-', '_', no leading dot, at most MAX_NAME characters). It is only ever looked up as
  NAME.pt in the model folders; a path is used only when the user gives it (--model, model=).
- Stream layout: at most MAX_STREAMS streams; a segment codes at most MAX_SEGMENT_SYMBOLS bytes
  (streams x steps, counting only steps that exist); with full dynamic evaluation at most
  FULL_DE_MAX_STREAMS streams.
- Records: a segment of n bytes stores at least max(1, n // SYMBOLS_PER_WORD - 1) words (no byte
  costs less than -log2(1 - 255 / 2**24) bits under 24-bit tables in which every byte has
  frequency >= 1), so the original length is bounded by the file's size (body_problem).
- Settings JSON: at most MAX_JSON_DEPTH levels of nesting, finite numbers only, integers below
  2**53 in magnitude, strings of at most MAX_STRING characters.
- Predictor tree: at most MAX_TREE_DEPTH levels (final stage, ensemble, member), ensembles of
  2..MAX_MEMBERS members; the per-predictor ranges in the checks below (hash table sizes and
  the like), and an estimate of the table memory of the whole tree of at most MAX_TABLE_BYTES.

Standard library only, so that the container can use it without numpy.
"""
from __future__ import annotations

import math
import re

MAX_NAME = 100
PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,%d}" % (MAX_NAME - 1))

MAX_STREAMS = 4096
MAX_SEGMENT_SYMBOLS = 1 << 22   # the writer's default is 1 << 20
FULL_DE_MAX_STREAMS = 256        # predictors/fslstm/backward.py MAX_STREAMS
FULL_DE_MAX_SEGMENT = 1024       # predictors/fslstm/backward.py MAX_SEGMENT
MIN_SYMBOL_BITS = -math.log2(1 - 255 / (1 << 24))
SYMBOLS_PER_WORD = math.ceil(32 / MIN_SYMBOL_BITS)
SEGMENT_RECORD_BYTES = 21        # a segment record without its words
END_RECORD_BYTES = 41

MAX_JSON_DEPTH = 24
MAX_JSON_INT = (1 << 53) - 1
MAX_STRING = 4096

MAX_TREE_DEPTH = 3
MAX_MEMBERS = 4
MAX_TABLE_BYTES = 3 << 30

BUILTIN = ("ctx1", "ctx2", "order0")
STAGES = ("match", "cm")
MIXERS = ("mix", "gmix")
NO_MODEL = "0" * 64


class LimitError(ValueError):
    """A value outside the limits; `what` names the part of the predictor (for messages)."""

    def __init__(self, what: str, detail: str):
        super().__init__(detail)
        self.what = what
        self.detail = detail


def plain_name(name) -> bool:
    return isinstance(name, str) and PLAIN_NAME.fullmatch(name) is not None


# ---------------------------------------------------------------- stream layout and records

def layout_problem(length: int, n_streams: int, segment_steps: int) -> str | None:
    """Why a header's stream layout is outside the limits (None when it is within them)."""
    if n_streams > MAX_STREAMS:
        return f"{n_streams} streams (at most {MAX_STREAMS})"
    if length:
        span = -(-length // n_streams)
        if n_streams * min(segment_steps, span) > MAX_SEGMENT_SYMBOLS:
            return f"segments of {n_streams} x {min(segment_steps, span)} bytes " \
                   f"(at most {MAX_SEGMENT_SYMBOLS})"
    return None


def min_words(n_symbols: int) -> int:
    """The fewest range-coder words a genuine segment of n_symbols bytes can take: one at least,
    and one fewer than its shortest possible code length in whole words."""
    return max(1, n_symbols // SYMBOLS_PER_WORD - 1) if n_symbols else 0


def body_problem(length: int, n_streams: int, segment_steps: int, body_bytes: int) -> str | None:
    """Why `body_bytes` bytes after a header cannot hold the records the header implies."""
    if length == 0:
        need_words, n_seg = 0, 0
    else:
        span = -(-length // n_streams)
        n_seg = -(-span // segment_steps)
        # the sum of min_words over the segments is at least this
        need_words = max(n_seg, length // SYMBOLS_PER_WORD - 2 * n_seg)
    need = n_seg * SEGMENT_RECORD_BYTES + 4 * need_words + END_RECORD_BYTES
    if body_bytes < need:
        return (f"the header describes {length} bytes in {n_seg} segments, which take at least "
                f"{need} bytes, but only {body_bytes} follow it")
    return None


# ---------------------------------------------------------------- settings JSON

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(blob: bytes) -> int:
    """Nesting depth of the JSON text `blob` (strings skipped), without parsing it."""
    depth = best = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b'""', blob)):
        if m.group() in b"[{":
            depth += 1
            best = max(best, depth)
        else:
            depth -= 1
    return best


def _parse_int(s: str) -> int:
    if len(s.lstrip("-")) > 16 or abs(int(s)) > MAX_JSON_INT:
        raise ValueError(f"integer {s[:20]} out of range")
    return int(s)


def _parse_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"number {s[:20]} out of range")
    return v


def _parse_constant(s: str):
    raise ValueError(f"{s} is not a number this format allows")


def loads_settings(blob: bytes) -> dict:
    """Parses a header's settings JSON within the limits; raises ValueError otherwise."""
    import json
    if json_depth(blob) > MAX_JSON_DEPTH:
        raise ValueError(f"settings nested deeper than {MAX_JSON_DEPTH} levels")
    value = json.loads(blob.decode("utf-8"), parse_int=_parse_int, parse_float=_parse_float,
                       parse_constant=_parse_constant)
    if not isinstance(value, dict):
        raise ValueError("settings are not an object")
    _check_strings(value)
    return value


def _check_strings(v) -> None:
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            for k, y in x.items():
                if len(k) > MAX_STRING:
                    raise ValueError("settings key too long")
                stack.append(y)
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str) and len(x) > MAX_STRING:
            raise ValueError("settings string too long")


# ---------------------------------------------------------------- predictor tree

def _int(what: str, settings: dict, key: str, lo: int, hi: int, default=None) -> int:
    v = settings.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise LimitError(what, f"{key} must be an integer, not {_short(v)}")
    if not lo <= v <= hi:
        raise LimitError(what, f"{key} must be in {lo}..{hi}, not {v}")
    return v


def _num(what: str, settings: dict, key: str, lo: float, hi: float, lo_open: bool = False) -> float:
    v = settings.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise LimitError(what, f"{key} must be a finite number, not {_short(v)}")
    if not (lo < v if lo_open else lo <= v) or v > hi:
        raise LimitError(what, f"{key} must be in {'(' if lo_open else '['}{lo}, {hi}], not {v}")
    return float(v)


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _only(what: str, settings: dict, keys) -> None:
    unknown = set(settings) - set(keys)
    if unknown:
        raise LimitError(what, f"unknown settings {sorted(unknown)[:5]}")


def _sha(what: str, v) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]{64}", v):
        raise LimitError(what, "sha256 must be 64 hexadecimal digits")
    return v


def _node(what: str, d) -> tuple[str, str, dict]:
    """(name, sha256 hex, settings) of a member or an inner predictor's description."""
    if not isinstance(d, dict):
        raise LimitError(what, "a predictor description must be an object")
    name, sha, settings = d.get("name"), d.get("sha256"), d.get("settings")
    if not plain_name(name):
        raise LimitError(what, f"predictor name {_short(name)} is not a plain name")
    _sha(what, sha)
    if not isinstance(settings, dict):
        raise LimitError(what, "predictor settings must be an object")
    return name, sha, settings


def check_tree(name, sha256_hex: str, settings, depth: int = 1) -> int:
    """Checks a predictor description (as a header records it) against the limits: names, types,
    ranges, member counts, nesting depth. Returns an estimate of its table memory in bytes;
    raises LimitError. The memory of the whole tree is checked by check_identity."""
    what = f"{name} predictor" if plain_name(name) else "predictor"
    if not plain_name(name):
        raise LimitError(what, f"predictor name {_short(name)} is not a plain name")
    if depth > MAX_TREE_DEPTH:
        raise LimitError(what, f"predictors nested deeper than {MAX_TREE_DEPTH} levels")
    if not isinstance(settings, dict):
        raise LimitError(what, "settings must be an object")
    _sha(what, sha256_hex)
    builtin = sha256_hex == NO_MODEL
    if name in STAGES and not builtin:
        what = f"{name}-stage"
        inner = _node(what, settings.get("inner"))
        own = {k: v for k, v in settings.items() if k not in ("inner", "arith")}
        if name == "match":
            _only(what, own, ("min_len", "hash_bits", "verify", "rate"))
            hb = _int(what, own, "hash_bits", 10, 22, 20)
            _int(what, own, "min_len", 2, 8, 6)
            _int(what, own, "verify", 2, 64, 32)
            _int(what, own, "rate", 2, 12, 7)
            mem = 8 << hb
        else:
            _only(what, own, ("hash_bits", "limit", "lr", "lr_shift", "apm_rate", "apm_mix",
                              "match_min", "match_bits", "verify", "nibbles"))
            hb = _int(what, own, "hash_bits", 10, 20, 18)
            mb = _int(what, own, "match_bits", 10, 22, 20)
            for key, lo, hi, dflt in (("limit", 1, 255, 127), ("lr", 1, 64, 2),
                                      ("lr_shift", 8, 20, 13), ("apm_rate", 2, 12, 7),
                                      ("apm_mix", 0, 4, 3), ("match_min", 2, 8, 6),
                                      ("verify", 2, 64, 32), ("nibbles", 1, 16, 4)):
                _int(what, own, key, lo, hi, dflt)
            mem = (10 << hb) * 64 + (8 << mb) + (64 << 20)
        return mem + check_tree(*inner, depth=depth + 1)
    if name in MIXERS and not builtin:
        what = "ensemble"
        members = settings.get("members")
        if not isinstance(members, list) or not 2 <= len(members) <= MAX_MEMBERS:
            raise LimitError(what, f"an ensemble has 2..{MAX_MEMBERS} members")
        _int(what, settings, "share", 0, 14)
        _int(what, settings, "temper", 0, 1, 1)
        if name == "gmix":
            _int(what, settings, "lr_shift", 4, 24)
        mem = 0
        for m in members:
            mem += check_tree(*_node(what, m), depth=depth + 1)
        return mem
    if builtin:
        if name == "order0":
            _only("order0 predictor", settings, ("limit",))
            _int("order0 predictor", settings, "limit", 1, 1 << 24, 1 << 16)
            return 0
        if name in ("ctx1", "ctx2"):
            _only(what, settings, ("max_order", "hash_bits", "limit", "inc", "esc", "esc_step"))
            for key in settings:
                _int(what, settings, key, 0, 1 << 16)
            k = _int(what, settings, "max_order", 0, 7, 5)
            hb = _int(what, settings, "hash_bits", 8, 20, 18)
            rows = sum(1 << (8 * i) for i in range(min(k, 2) + 1)) + max(0, k - 2) * (1 << hb)
            return rows * (256 + 16)
        return 0  # an unknown built-in name is refused by the decoder, naming it
    # a model file (the FS-LSTM): its settings
    what = f"model {name}"
    _only(what, settings, ("arith", "dyneval"))
    if "dyneval" in settings:
        de = settings["dyneval"]
        if not isinstance(de, dict):
            raise LimitError(what, "dynamic-evaluation settings must be an object")
        what = f"model {name} dynamic-evaluation"
        _only(what, de, ("arith", "segment", "lr", "decay", "eps"))
        for key in ("arith", "segment", "lr", "decay", "eps"):
            if key not in de:
                raise LimitError(what, f"{key} is missing")
        if not isinstance(de["arith"], str):
            raise LimitError(what, "arith must be a string")
        full = de["arith"] == "de-full-v1"
        _int(what, de, "segment", 1, FULL_DE_MAX_SEGMENT if full else 1 << 16)
        _num(what, de, "lr", 0.0, 1.0)
        _num(what, de, "decay", 0.0, 1.0)
        _num(what, de, "eps", 0.0, 1e3, lo_open=True)
    return 64 << 20


def check_identity(name, sha256_hex: str, settings) -> None:
    """check_tree, then the estimate of the whole tree's table memory."""
    mem = check_tree(name, sha256_hex, settings)
    if mem > MAX_TABLE_BYTES:
        raise LimitError(f"{name} predictor",
                         f"its tables would take about {mem >> 20} MB (at most "
                         f"{MAX_TABLE_BYTES >> 20} MB)")


def max_streams(settings) -> int:
    """The most streams a predictor with these (checked) settings can code: FULL_DE_MAX_STREAMS
    when any FS-LSTM in it runs full dynamic evaluation, MAX_STREAMS otherwise."""
    stack = [settings]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            de = x.get("dyneval")
            if isinstance(de, dict) and de.get("arith") == "de-full-v1":
                return FULL_DE_MAX_STREAMS
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return MAX_STREAMS
