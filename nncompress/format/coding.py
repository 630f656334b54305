"""Probability tables and range coding (numpy + constriction; no torch).

This is the one place where a predictor's output becomes an integer frequency table, and the one
place that talks to constriction. Predictors return non-negative integer *weights* per byte value;
``quantize`` turns them into frequencies with every byte >= 1 and an exact sum of 2**24, using
integer arithmetic only, so encoder and decoder build identical tables on every machine.

constriction's ``Categorical(perfect=False)`` quantises float probabilities itself; given the
float64 array ``F - 1`` of an exact integer table ``F`` (all F >= 1, sum 2**24) it uses exactly F
(tests/test_coding.py checks the code length against F).
"""
from __future__ import annotations

import numpy as np
import constriction

PRECISION = 24
TOTAL = 1 << PRECISION
ALPHABET = 256
# quantize() multiplies weights by (TOTAL - ALPHABET) in int64: keep weights below 2**38.
MAX_WEIGHT_SUM = 1 << 38

_FAMILY = constriction.stream.model.Categorical(perfect=False)
_RangeEncoder = constriction.stream.queue.RangeEncoder
_RangeDecoder = constriction.stream.queue.RangeDecoder


def quantize(weights: np.ndarray) -> np.ndarray:
    """Integer weights (n, 256) -> frequencies (n, 256) int64, each >= 1, rows summing to 2**24.

    Each row must have a sum in [0, 2**38); an all-zero row gives the uniform table. The
    rounding remainder (< 256) goes to the first largest weight, so the result depends on the
    integer weights alone.
    """
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[1] != ALPHABET:
        raise ValueError(f"weights must have shape (n, {ALPHABET}), got {w.shape}")
    w = w.astype(np.int64, copy=False)
    if w.size and w.min() < 0:
        raise ValueError("weights must be non-negative")
    total = w.sum(axis=1, keepdims=True)
    if total.size and total.max() >= MAX_WEIGHT_SUM:
        raise ValueError("weight rows must sum to less than 2**38")
    if total.size and total.min() == 0:
        w = np.where(total == 0, 1, w)
        total = w.sum(axis=1, keepdims=True)
    freq = 1 + (w * (TOTAL - ALPHABET)) // total
    rows = np.arange(w.shape[0])
    freq[rows, np.argmax(w, axis=1)] += TOTAL - freq.sum(axis=1)
    return freq


def code_length_bits(freq: np.ndarray, symbols: np.ndarray) -> float:
    """Ideal code length -sum(log2 p) of ``symbols`` under the quantised tables ``freq``."""
    f = freq[np.arange(len(symbols)), np.asarray(symbols, dtype=np.int64)]
    return float(PRECISION * len(symbols) - np.log2(f).sum())


def _as_probs(freq: np.ndarray) -> np.ndarray:
    # Exact integer table F handed over as float64 F - 1, C-contiguous (constriction reads memory
    # order and does not check). The values are small integers, so the conversion is exact.
    return np.ascontiguousarray(freq - 1, dtype=np.float64)


class SegmentEncoder:
    """Range-codes one independent segment. A new encoder per segment: constriction's clear()
    can leave carry state behind, and per-segment encoders keep memory bounded."""

    def __init__(self) -> None:
        self._enc = _RangeEncoder()
        self.symbols = 0

    def encode(self, symbols: np.ndarray, freq: np.ndarray) -> None:
        if len(symbols) == 0:
            return
        self._enc.encode(np.ascontiguousarray(symbols, dtype=np.int32), _FAMILY, _as_probs(freq))
        self.symbols += len(symbols)

    def finish(self) -> np.ndarray:
        """The compressed words (uint32). The encoder must not be used afterwards."""
        return np.asarray(self._enc.get_compressed(), dtype=np.uint32)


class SegmentDecoder:
    """Decodes one segment written by SegmentEncoder, given the same tables in the same order."""

    def __init__(self, words: np.ndarray) -> None:
        self._dec = _RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))

    def decode(self, freq: np.ndarray) -> np.ndarray:
        if len(freq) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self._dec.decode(_FAMILY, _as_probs(freq)), dtype=np.int64)
