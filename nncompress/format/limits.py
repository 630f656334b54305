"""Limits on everything a .nnc file (or a caller) can ask for, checked before anything is allocated.

A file's header chooses the predictor, its settings and the stream layout; a forged header with
valid CRCs could otherwise name any file as a model, or ask for tables, streams or segments far
larger than any file this program writes. The limits here follow from what the writer produces;
the writer is held to the same limits, so every file it writes passes them.

- Names: a model or predictor name in a header is a plain name (PLAIN_NAME: letters, digits,
  '.', '-', '_', no leading dot, at most MAX_NAME characters). It is only ever looked up as
  NAME.pt in the model folders; a path is used only when the user gives it (--model, model=).
- Stream layout: at most MAX_STREAMS streams; a segment codes at most MAX_SEGMENT_SYMBOLS bytes
  (streams x steps, counting only steps that exist). A predictor may code fewer streams (its
  stream limits, predictors/registry.py).
- Records: a segment of n bytes stores at least max(1, n // SYMBOLS_PER_WORD - 1) words (no byte
  costs less than -log2(1 - 255 / 2**24) bits under 24-bit tables in which every byte has
  frequency >= 1), so the original length is bounded by the file's size (body_problem).
- Settings JSON: at most MAX_JSON_DEPTH levels of nesting, finite numbers only, integers below
  2**53 in magnitude, strings of at most MAX_STRING characters.
- Predictor tree: at most MAX_TREE_DEPTH levels (final stage, ensemble, member), ensembles of
  2..MAX_MEMBERS members, and an estimate of the table memory of the whole tree of at most
  MAX_TABLE_BYTES. Each predictor's own settings are bounded by its settings schema; the
  predictors layer checks a whole description (predictors/registry.py check), as this layer
  does not know the predictors.

Standard library only, so that the container can use it without numpy.
"""
from __future__ import annotations

import math
import re

MAX_NAME = 100
PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,%d}" % (MAX_NAME - 1))

MAX_STREAMS = 4096
MAX_SEGMENT_SYMBOLS = 1 << 22   # the writer's default is 1 << 20
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
