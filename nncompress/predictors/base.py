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

from ..format import limits
from .schema import Schema

NO_MODEL_SHA256 = bytes(32)

# How a predictor shapes the default stream count (engine.choose_streams): one stream per
# MIN_STREAM_LEN bytes, at most MAX_STREAMS; STREAM_CAP is the most it can code at all.
DEFAULT_MIN_STREAM_LEN = 1 << 16
DEFAULT_MAX_STREAMS = 64
FORMAT_MAX_STREAMS = limits.MAX_STREAMS


@dataclass(frozen=True)
class StreamLimits:
    min_stream_len: int = DEFAULT_MIN_STREAM_LEN
    max_streams: int = DEFAULT_MAX_STREAMS
    cap: int = FORMAT_MAX_STREAMS

    @staticmethod
    def tightest(limits: list["StreamLimits"]) -> "StreamLimits":
        """The limits of predictors stepped together: the smallest of each."""
        return StreamLimits(min(x.min_stream_len for x in limits),
                            min(x.max_streams for x in limits), min(x.cap for x in limits))


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


class Registered:
    """What a predictor class declares for the registry (predictors/registry.py), so that a
    header's description can be checked and rebuilt without knowing the class beforehand:

    NAMES       the names its headers record (a model-file predictor records its model's name
                instead and sets MODEL_FILE)
    ARITH       its arithmetic tag, recorded as settings["arith"] (None: none recorded)
    SETTINGS    its Schema: every other setting it records, with types, defaults and ranges
    CHILDREN    None, "inner" (a final stage wrapping one predictor) or "members" (an ensemble)
    MIN_STREAM_LEN, MAX_STREAMS, STREAM_CAP
                its stream limits (StreamLimits); stages and ensembles take their inner
                predictors' (stream_limits)

    and builds itself from its own header identity (from_identity)."""
    NAMES: tuple = ()
    ARITH = None
    SETTINGS = Schema({})
    CHILDREN = None
    MODEL_FILE = False
    MIN_STREAM_LEN = DEFAULT_MIN_STREAM_LEN
    MAX_STREAMS = DEFAULT_MAX_STREAMS
    STREAM_CAP = FORMAT_MAX_STREAMS
    # the message for a header whose settings["arith"] is not ARITH
    ARITH_REFUSED = ("this file's {name} predictor has arithmetic {got}; this version of "
                     "nncompress has {arith}")

    @classmethod
    def what(cls, name: str) -> str:
        """How messages name a predictor of this class called `name`."""
        return f"{name} predictor"

    @classmethod
    def schema(cls, name: str) -> Schema:
        return cls.SETTINGS

    @classmethod
    def check_settings(cls, name: str, settings: dict, header: bool = False) -> dict:
        """The settings (without "arith" and the children) checked against the schema, with
        the defaults filled in; SettingsError otherwise."""
        return cls.schema(name).check(cls.what(name), settings, header)

    @classmethod
    def table_bytes(cls, settings: dict) -> int:
        """An estimate of the memory of its tables with these checked settings (children not
        included)."""
        return 0

    @classmethod
    def stream_limits(cls, settings: dict, children: list) -> StreamLimits:
        """Its stream limits with these settings, given its children's (a list of
        StreamLimits)."""
        if children:
            return StreamLimits.tightest(children)
        return StreamLimits(cls.MIN_STREAM_LEN, cls.MAX_STREAMS, cls.STREAM_CAP)

    @classmethod
    def identity_sha256(cls, name: str, children: list) -> bytes:
        """The model hash its header records, from its children's (name, model hash) pairs;
        only stages and ensembles define it."""
        raise NotImplementedError

    @classmethod
    def from_identity(cls, name: str, settings: dict, children: list, source):
        """The predictor a header describes: `settings` checked and completed (no "arith", no
        children), `children` its inner predictors, already rebuilt; `source` finds the model
        file the header names (source.model_file(), a modelfiles.ModelRef) and gives the
        device (source.device)."""
        return cls(**settings) if not children else cls(*children, **settings)


class Stage(Registered):
    """A final stage: it wraps one predictor (its one child) and its identity hashes the
    wrapped predictor's; it is rebuilt from a header as Stage(inner, name=..., **settings)."""

    @classmethod
    def what(cls, name: str) -> str:
        return f"{name}-stage"

    @classmethod
    def identity_sha256(cls, name: str, children: list) -> bytes:
        (inner_name, inner_sha), = children
        return stage_sha256(name, inner_name, inner_sha)

    @classmethod
    def from_identity(cls, name, settings, children, source):
        return cls(children[0], name=name, **settings)
