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

GeoMixture ("gmix", the mixer of new ensembles) adds a second, geometric stage on top: the output is
proportional to prod_k P_k(x)**w_k over the members and the linear mixture above, in the log2
domain (Q12 logarithms from integer-built tables). The weights w are shared by all streams (one set
per bucket of the previous byte) and learn by gradient descent on the code length:
w_k += lr * sum over streams of (log2 P_k(byte) - E_mix[log2 P_k]). They start at (0, ..., 0, 1),
i.e. the linear mixture. Unlike a linear mixture, a geometric one can be sharper than
every member where they agree, and lets a confident member veto a byte the other finds likely.

Its learning rate 2**-10 was chosen on trainpool shard7 only (FS-LSTM v3 with full dynamic
evaluation and ctx1; ideal bits per byte): 2**-8 / 2**-9 / 2**-10 / 2**-11 gave 1.7983 / 1.7931 /
1.7918 / - on 200 KB of books, 1.3358 / 1.3319 / 1.3306 / - on 120 KB of C, 1.8268 / 1.8273 (2**-10,
2**-11) on 200 KB of Wikipedia XML and 1.8288 / 1.8293 on 120 KB of reStructuredText, against
1.8099, 1.3798, 1.8812 and 1.8614 for the linear mixture alone. Weight sets chosen by ctx1's
confidence and the members' agreement as well as the bucket were no better (1.7942, 1.3293,
1.8226, 1.8308).
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from . import kernels, schema
from .base import PredictorIdentity, Registered

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


def members_sha256(members: list) -> bytes:
    """Identity of an ensemble: SHA-256 over its members' (name, model hash) pairs, in order."""
    h = hashlib.sha256()
    for name, sha256 in members:
        h.update(name.encode() + b"\0" + sha256)
    return h.digest()


def ensemble_sha256(members) -> bytes:
    """members_sha256 of these predictors' identities."""
    return members_sha256([(m.identity.name, m.identity.model_sha256) for m in members])


def _member_weights(members, fn) -> tuple:
    return tuple(np.ascontiguousarray(fn(m), dtype=np.int64) for m in members)


class Mixture(Registered):
    NAMES = ("mix",)
    CHILDREN = "members"
    SETTINGS = schema.Schema({
        "share": schema.integer(0, 14, 5, required=True),
        "temper": schema.choice(1, default=1),
        "buckets": schema.choice("class4-v1", default="class4-v1", required=True),
    })
    # False: step with the numpy reference methods instead of the compiled kernels (the same
    # integers; tests compare the two). Read at start().
    use_kernels = True

    def __init__(self, members: list, share: int = 5, temper: int = 1, name: str = "mix",
                 **settings):
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        cfg = self.check_settings(name, {"share": share, "temper": temper, **settings})
        self.members = members
        self.share = cfg["share"]
        self.temper = cfg["temper"]
        self.identity = PredictorIdentity(
            name, ensemble_sha256(members),
            {**cfg, "members": [{"name": m.identity.name, "sha256": m.identity.model_sha256.hex(),
                                 "settings": m.identity.settings} for m in members]})

    @classmethod
    def what(cls, name: str) -> str:
        return "ensemble"

    @classmethod
    def identity_sha256(cls, name: str, children: list) -> bytes:
        return members_sha256(children)

    @classmethod
    def from_identity(cls, name, settings, children, source):
        return cls(children, name=name, **settings)

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
        self._kernel = self.use_kernels
        if self._kernel:  # self.P: (M, A, 256)
            return self._kernel_out(_member_weights(self.members, lambda m: m.start(n_streams)))
        self.P = [normalise(m.start(n_streams)) for m in self.members]
        return self._mix()

    def _kernel_out(self, ws: tuple) -> np.ndarray:
        self.P, lin = kernels.mix_predict(ws, self.alpha, self.bucket)
        return lin

    def _kernel_learn(self, symbols: np.ndarray) -> None:
        kernels.mix_learn(symbols, self.alpha, self.bucket, self.P, self.share, self.temper,
                          _BUCKET)

    def step(self, symbols: np.ndarray) -> np.ndarray:
        symbols = np.ascontiguousarray(symbols, dtype=np.int64)
        if self._kernel:
            self._kernel_learn(symbols)
            return self._kernel_out(_member_weights(self.members, lambda m: m.step(symbols)))
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


# --- the geometric stage ---------------------------------------------------------------------
LOG_FRAC = 12         # log2 values in Q12
W_BITS = 16           # geometric weights in Q16
EXP_BITS = 29         # output weights: 2**29 for the most likely byte (row sums < 2**37)
W_LIMIT = 1 << 20     # |w| <= 16


def _log2_table() -> np.ndarray:
    """LOG2[i] = round(2**LOG_FRAC * log2(1 + i/4096)) for i < 4096, in integer arithmetic only
    (bit-by-bit squaring at 64 fractional bits), so the table is the same on every machine."""
    one, extra = 1 << 64, 8
    out = []
    for i in range(4096):
        x, r = ((4096 + i) << 64) >> 12, 0
        for _ in range(LOG_FRAC + extra):
            x = (x * x) >> 64
            r <<= 1
            if x >= 2 * one:
                x >>= 1
                r |= 1
        out.append((r + (1 << (extra - 1))) >> extra)
    return np.array(out, dtype=np.int64)


def _exp2_table() -> np.ndarray:
    """EXP2[j] = round(2**EXP_BITS * 2**(-j/4096)) for j < 4096, in integer arithmetic only:
    a product of the constants 2**(-2**-k), each the integer square root of the one before."""
    c, k64 = [], 1 << 63                      # 2**-1 in Q64
    for _ in range(LOG_FRAC):
        k64 = math.isqrt(k64 << 64)           # c[k] = 2**(-2**-(k + 1))
        c.append(k64)
    out = []
    for j in range(4096):
        x = 1 << 64
        for k in range(LOG_FRAC):            # bit (11 - k) of j weighs 2**-(k + 1)
            if j >> (LOG_FRAC - 1 - k) & 1:
                x = (x * c[k]) >> 64
        out.append((x + (1 << (63 - EXP_BITS))) >> (64 - EXP_BITS))
    return np.array(out, dtype=np.int64)


_LOG2 = _log2_table()
_EXP2 = _exp2_table()
_POW2 = 1 << np.arange(40, dtype=np.int64)


def log2_q12(p: np.ndarray) -> np.ndarray:
    """Q22 probabilities (1 <= p <= 2**22) -> log2(p / 2**22) in Q12 (<= 0): the bit length plus
    the table value of the top 12 bits after the leading one (error < 2**-11), integers only."""
    n = np.searchsorted(_POW2, p, side="right") - 1             # floor(log2 p)
    m = np.where(n >= 12, p >> np.maximum(n - 12, 0), p << np.maximum(12 - n, 0))
    return ((n - P_BITS) << LOG_FRAC) + _LOG2[m - 4096]


def exp2_neg_q12(d: np.ndarray) -> np.ndarray:
    """d >= 0 in Q12 -> 2**EXP_BITS * 2**(-d), floor-shifted (0 once d >= EXP_BITS + 1)."""
    return _EXP2[d & 4095] >> np.minimum(d >> LOG_FRAC, 63)


class GeoMixture(Mixture):
    NAMES = ("gmix",)
    ARITH = "geo-v1"
    ARITH_REFUSED = "this file's ensemble description is not understood by this version of nncompress"
    SETTINGS = Mixture.SETTINGS.replace(lr_shift=schema.integer(4, 24, 10, required=True))

    def __init__(self, members: list, share: int = 5, temper: int = 1, lr_shift: int = 10,
                 name: str = "gmix", **settings):
        super().__init__(members, share=share, temper=temper, name=name, lr_shift=lr_shift,
                         **settings)
        self.lr_shift = self.identity.settings["lr_shift"]
        self.identity.settings["arith"] = self.ARITH

    def _geo(self, lin: np.ndarray) -> np.ndarray:
        a = lin.shape[0]
        L = np.stack([log2_q12(P[:a]) for P in self.P] + [log2_q12(normalise(lin))], axis=1)
        c = self.bucket[:a].copy()
        s = (self.w[c][:, :, None] * L).sum(axis=1)                # (a, 256), Q28
        d = (s.max(axis=1, keepdims=True) - s) >> W_BITS              # Q12, >= 0
        q = exp2_neg_q12(d)                                         # max entry 2**29
        self.L, self.q, self.c = L, q, c
        return q

    def start(self, n_streams: int) -> np.ndarray:
        K = len(self.members) + 1
        self.w = np.zeros((N_BUCKETS, K), dtype=np.int64)
        self.w[:, -1] = 1 << W_BITS
        lin = super().start(n_streams)
        return lin if self._kernel else self._geo(lin)

    def _kernel_out(self, ws: tuple) -> np.ndarray:
        # the members' tables, the linear mixture and the geometric stage in one call
        self.P, self.L, self.q, self.c = kernels.geo_predict(ws, self.alpha, self.bucket, self.w,
                                                             _LOG2, _EXP2)
        return self.q

    def _kernel_learn(self, symbols: np.ndarray) -> None:
        kernels.geo_learn(symbols, self.L, self.q, self.c, self.w, self.lr_shift)
        super()._kernel_learn(symbols)

    def step(self, symbols: np.ndarray) -> np.ndarray:
        symbols = np.ascontiguousarray(symbols, dtype=np.int64)
        if self._kernel:
            return super().step(symbols)
        a = len(symbols)
        L, q, c = self.L[:a], self.q[:a], self.c[:a]
        # Gradient of the code length: log2 P_k(byte) - E_q[log2 P_k], Q12, |g| < 2**18.
        Ly = L[np.arange(a), :, symbols]                              # (a, K)
        E = (q[:, None, :] * L).sum(axis=2) // q.sum(axis=1)[:, None]  # |q*L| < 2**46, sums < 2**54
        G = np.zeros_like(self.w)
        np.add.at(G, c, Ly - E)                                     # < 256 streams * 2**18
        shift = self.lr_shift - (W_BITS - LOG_FRAC)                 # lr = 2**-lr_shift
        G = (G + (1 << (shift - 1)) >> shift) if shift > 0 else G << -shift
        self.w = np.clip(self.w + G, -W_LIMIT, W_LIMIT)
        return self._geo(super().step(symbols))
