"""Ensembles: several predictors mixed with weights learned online, in exact integer arithmetic.

Each member's weights are normalised to a probability table in Q22 (every entry >= 1). The mixture
is sum_m alpha_m * P_m with per-stream mixing weights alpha (Q14, one set per stream and per
context bucket). After each byte, alpha is updated by Bayes' rule on the member probabilities of
that byte, tempered to sqrt(p) (learning rate 1/2) when `temper` is 1, and renormalised; then a
fixed share 2**-share of the total is spread back evenly over the members (Herbster-Warmuth fixed
share), so the mixture keeps tracking which member is better now.

Defaults (share 5, temper 1) were chosen on trainpool shard0 text (Ford_Post_1926.txt, 120 KB, with
an early FS-LSTM checkpoint and ctx1): 2.2428 bpb against 2.2347 for (3, 0), while on a highly
repetitive text a useless member costs 0.03 bpb instead of 0.09.

Everything is integer: products stay below 2**62, divisions are floor divisions, so the mixture is
as portable as its members. The bucket is a class of the stream's previous byte (letter, space,
digit, other: 4 buckets), so the mixer can learn e.g. that one member is better after a space.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .base import PredictorIdentity, stream_limits

P_BITS = 22           # member tables: Q22, each entry >= 1
A_BITS = 14           # mixing weights: Q14 (sum about 2**14)
N_BUCKETS = 4


def _bucket_table() -> np.ndarray:
    t = np.full(256, 3, dtype=np.int64)
    for c in range(256):
        ch = chr(c)
        if ch.isascii() and ch.isalpha():
            t[c] = 0
        elif c in (32, 9, 10, 13):
            t[c] = 1
        elif ch.isdigit():
            t[c] = 2
    return t


_BUCKET = _bucket_table()


def normalise(w: np.ndarray) -> np.ndarray:
    """Integer weights (A, 256), row sums < 2**38 -> Q22 table with entries >= 1."""
    w = w.astype(np.int64, copy=False)
    total = np.maximum(w.sum(axis=1, keepdims=True), 1)
    return 1 + (w * ((1 << P_BITS) - 256)) // total


def _isqrt(v: np.ndarray) -> np.ndarray:
    """Exact floor(sqrt(v)) for int64 v < 2**62 (float estimate, corrected one step each way)."""
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r -= (r * r > v).astype(np.int64)
    r += ((r + 1) * (r + 1) <= v).astype(np.int64)
    return r


def ensemble_sha256(members) -> bytes:
    """Identity of an ensemble: SHA-256 over its members' names and model hashes, in order."""
    h = hashlib.sha256()
    for m in members:
        h.update(m.identity.name.encode() + b"\0" + m.identity.model_sha256)
    return h.digest()


class Mixture:
    def __init__(self, members: list, share: int = 5, temper: int = 1, name: str = "mix"):
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = members
        self.share = int(share)
        self.temper = int(temper)
        self.identity = PredictorIdentity(
            name, ensemble_sha256(members),
            {"share": self.share, "temper": self.temper, "buckets": "class4-v1",
             "members": [{"name": m.identity.name, "sha256": m.identity.model_sha256.hex(),
                          "settings": m.identity.settings} for m in members]})
        limits = [stream_limits(m) for m in members]
        self.min_stream_len = min(lo for lo, _ in limits)
        self.max_streams = min(hi for _, hi in limits)

    def _mix(self):
        a = self.P[0].shape[0]
        alpha = self.alpha[np.arange(a), self.bucket[:a]]          # (A, M)
        out = np.zeros_like(self.P[0])
        for m, P in enumerate(self.P):
            out += alpha[:, m:m + 1] * P                           # < M * 2**14 * 2**22
        return out

    def start(self, n_streams: int) -> np.ndarray:
        M = len(self.members)
        self.alpha = np.full((n_streams, N_BUCKETS, M), (1 << A_BITS) // M, dtype=np.int64)
        self.bucket = np.full(n_streams, 1, dtype=np.int64)         # as after a space
        self.P = [normalise(m.start(n_streams)) for m in self.members]
        return self._mix()

    def step(self, symbols: np.ndarray) -> np.ndarray:
        symbols = np.asarray(symbols, dtype=np.int64)
        a = len(symbols)
        rows = np.arange(a)
        M = len(self.members)
        b = self.bucket[:a]
        # Bayes: alpha_m * P_m(byte), renormalised to 2**14, then the fixed share.
        alpha = self.alpha[rows, b]                                 # (A, M)
        like = np.stack([P[rows, symbols] for P in self.P], axis=1)  # (A, M), in [1, 2**22]
        if self.temper:  # learning rate 1/2: sqrt(p), exactly (Q22 -> Q22)
            like = _isqrt(like << P_BITS)
        post = alpha * like                                         # < 2**36
        post = (post << A_BITS) // np.maximum(post.sum(axis=1, keepdims=True), 1)  # < 2**50
        post = post - (post >> self.share) + (((1 << A_BITS) // M) >> self.share)
        self.alpha[rows, b] = np.maximum(post, 1)
        self.bucket[:a] = _BUCKET[symbols]
        self.P = [normalise(m.step(symbols)) for m in self.members]
        return self._mix()
