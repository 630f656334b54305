"""Compression levels -1 .. -9: named presets of predictor spec and settings.

A level is only a way to choose; what it chose is recorded in the file's header (predictor name,
model hash, every setting, the stream count), so decoding never needs to know the level, and a
level's preset may change between releases without breaking a single old file. `info` names the
level whose preset matches a file's predictor and stream count, if any (level_of).

Lower levels spend less time per byte. Level 3 puts ctx1 under the bmix stage (binary context
mixing that codes its own bits, predictors/bmix.py). Levels 4 to 6 run the medium FS-LSTM in the
int8 arithmetic (exact-i8-v1: integer products on the CPU's int8 units, no dynamic evaluation):
mixed with ctx1 (4) or ctx2 (5), and, at the default, level 6, under the bmix stage, whose own
context models, match model and mixers take the place of the ensemble's (on 200 KB of four kinds
of text its first arithmetic, bmix-v1, wrote 0.1% more to 0.8% less than the earlier default, ctx2
and the byte-level cm stage, in about two thirds of the time; bmix-v2, with two more contexts,
direct counters of orders 2 and 3 and two more mixers, another 0.1% to 1.1% less). Levels 7 to 9 run the same network in the int16 arithmetic
(exact-v1) so that it can keep learning while it codes (dynamic evaluation of the output layer at
7, of every weight at 8 and 9), at a fraction of the speed, under the bmix stage as well (against
ctx2 and the cm stage, on 100 KB of shard-7 prose and XML: -0.4% to +0.3% in size, half the
memory); level 9 also gives each stream more text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# The neural members: the int8 form of the medium model (levels 4 to 6) and its int16 form with
# dynamic-evaluation statistics (levels 7 to 9); both exported from one float checkpoint.
FSLSTM_I8 = "fslstm-medium-i8-v1"
FSLSTM = "fslstm-medium-v1"
# Default frame sizes of framed files (format version 5), from bench/results/frames.md: the
# context models of levels 1 to 3 keep gaining from longer history (at level 1, 1 MiB frames cost
# 2.9% and 2 MiB frames 1.2% against one 4 MiB frame), and code 4 MiB in about half a minute; the
# FS-LSTM levels adapt within their first few hundred KB and code 1 MiB in one to ten minutes,
# so 1 MiB frames still give many workers something to do.
FRAME_BYTES = 1 << 20
# stream_bytes of a level that codes every frame in one stream
ONE_STREAM = 1 << 62
CONTEXT_FRAME_BYTES = 4 << 20


@dataclass(frozen=True)
class Level:
    level: int
    spec: str                        # predictor spec, dynamic evaluation included (predictors/spec.py)
    stream_bytes: Optional[int] = None  # bytes per stream; None: the predictor's own minimum
    summary: str = ""
    # Original bytes per frame of a framed (version 5) file; every frame is coded on its own,
    # so a smaller frame lets more workers share an input and costs ratio (bench/results/frames.md).
    frame_bytes: int = FRAME_BYTES


LEVELS: dict[int, Level] = {lv.level: lv for lv in (
    Level(1, "bcm", summary="binary context mixing, 2 threads from 2 MiB on (fastest)",
          frame_bytes=CONTEXT_FRAME_BYTES),
    Level(2, "bcm[hash_bits=22]", stream_bytes=ONE_STREAM,
          summary="bcm in one stream with 4x larger tables (about 0.5 GB)",
          frame_bytes=CONTEXT_FRAME_BYTES),
    Level(3, "ctx1+bmix", summary="ctx1 under the binary context-mixing stage (no neural model)",
          frame_bytes=CONTEXT_FRAME_BYTES),
    Level(4, f"{FSLSTM_I8}+ctx1",
          summary="FS-LSTM (int8) mixed with ctx1 (about 0.6 GB)"),
    Level(5, f"{FSLSTM_I8}+ctx2",
          summary="FS-LSTM (int8) mixed with ctx2"),
    Level(6, f"{FSLSTM_I8}+bmix",
          summary="FS-LSTM (int8) under the binary context-mixing stage (default)"),
    Level(7, f"{FSLSTM}+bmix:de-out",
          summary="FS-LSTM (int16), its output layer adapting to the text, bmix stage"),
    Level(8, f"{FSLSTM}+bmix:de-full",
          summary="as 7, every weight adapting to the text"),
    Level(9, f"{FSLSTM}+bmix:de-full", stream_bytes=1 << 16,
          summary="as 8, 64 KiB per stream"),
)}
DEFAULT_LEVEL = 6
FAST, BEST = min(LEVELS), max(LEVELS)


def get(level: int) -> Level:
    """The preset of `level` (1..9); ValueError otherwise."""
    if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
        raise ValueError(f"level must be an integer from {FAST} to {BEST}, not {level!r}")
    return LEVELS[level]


def streams_for(lv: Level, n: int, min_stream_len: int, max_streams: int) -> int:
    """The stream count level `lv` gives an input of n bytes, for a predictor with these limits."""
    from .engine import choose_streams
    return choose_streams(n, max(min_stream_len, lv.stream_bytes or 0), max_streams)


def level_of(header, device: str = "cpu") -> Optional[int]:
    """The level whose preset made a file with this header (predictor identity and stream count),
    or None. Builds the presets' predictors (not their tables), so it takes a second or two."""
    from . import api
    for lv in LEVELS.values():
        try:
            c = api.Compressor(lv.level, device=device)
        except Exception:          # a preset whose model is not installed cannot have made it
            continue
        i = c.identity
        if (i.name, i.model_sha256, i.settings) == (header.predictor_name, header.model_sha256,
                                                   header.settings) \
                and c.stream_count(header.original_length) == header.n_streams:
            return lv.level
    return None


def help_text() -> str:
    """One line per level, for the CLI's help."""
    return "\n".join(f"-{lv.level}  {lv.summary}" for lv in LEVELS.values())
