"""The interface between the engine and a predictor.

The engine codes S contiguous streams in lockstep. A predictor sees them only through:

    weights = p.start(S)        # (S, 256) non-negative int64 weights for each stream's first byte
    weights = p.step(symbols)   # symbols: (A,) int64, the byte just coded in each of the first A
                                # streams; returns (A, 256) weights for their next byte

A (the number of active streams) never grows, and the active streams are always the first A:
a stream that has ended is never stepped again. Row sums must be below 2**38
(coding.MAX_WEIGHT_SUM); coding.quantize turns weights into frequency tables. Encoder and decoder
call exactly the same sequence of start/step, so a predictor must be deterministic: the weights may
depend only on the settings, the model file and the symbols given so far.

``identity`` is what the container records about the predictor so that a decoder can rebuild it:
a short name, the SHA-256 of the model file (32 zero bytes when there is none) and a dict of every
setting that changes the weights (JSON-serialisable).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

NO_MODEL_SHA256 = bytes(32)

# How a predictor may shape the default stream count (engine.choose_streams): one stream per
# min_stream_len bytes, at most max_streams. Predictors may set these as attributes.
DEFAULT_MIN_STREAM_LEN = 1 << 16
DEFAULT_MAX_STREAMS = 64


def stream_limits(predictor) -> tuple[int, int]:
    """(min_stream_len, max_streams) of a predictor, with the defaults above."""
    return (getattr(predictor, "min_stream_len", DEFAULT_MIN_STREAM_LEN),
            getattr(predictor, "max_streams", DEFAULT_MAX_STREAMS))


def int_settings(settings: dict, defaults: dict, what: str) -> dict:
    """`defaults` updated with `settings`, which must be known keys with integer values (bools
    refused); raises ValueError naming `what` otherwise. Range checks stay with the predictor."""
    unknown = set(settings) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {what} settings: {sorted(unknown)}")
    cfg = dict(defaults)
    for key, value in settings.items():
        if isinstance(value, bool) or int(value) != value:
            raise ValueError(f"{what} setting {key} must be an int, got {value!r}")
        cfg[key] = int(value)
    return cfg


@dataclass(frozen=True)
class PredictorIdentity:
    name: str
    model_sha256: bytes = NO_MODEL_SHA256
    settings: dict = field(default_factory=dict)


def stage_sha256(stage: str, inner_name: str, inner_sha256: bytes) -> bytes:
    """Identity of a final stage ("match", "cm"): SHA-256 over the stage's name and the wrapped
    predictor's name and model hash."""
    return hashlib.sha256(stage.encode() + b"\0" + inner_name.encode() + b"\0" + inner_sha256).digest()


def stage_identity(stage: str, inner, settings: dict) -> PredictorIdentity:
    """What the header records of a final stage: its own settings (with its arithmetic tag) and
    the wrapped predictor's name, model hash and settings under "inner"."""
    i = inner.identity
    return PredictorIdentity(stage, stage_sha256(stage, i.name, i.model_sha256),
                             {**settings, "inner": {"name": i.name, "sha256": i.model_sha256.hex(),
                                                    "settings": i.settings}})


class Predictor(Protocol):
    identity: PredictorIdentity

    def start(self, n_streams: int) -> np.ndarray: ...

    def step(self, symbols: np.ndarray) -> np.ndarray: ...
