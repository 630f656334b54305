"""ContextModel: an adaptive order-N context model (ctx1, ctx2) in exact integer arithmetic.

No floats and no torch in the prediction and update path: every value is an integer in a
uint8/int64/uint64 array, so the weights are the same bits on every machine and thread count. A
step is one compiled call (kernels.ctx_step, numba); the numpy methods below (_update, _halve,
_predict, _coefficients) are the reference it is tested against, step by step.

Model (interpolated Witten-Bell blending of orders 0..max_order, as in PPM without exclusion):

- Per order k a table of byte counts, one row of 256 uint8 counts per context. Orders 0-2 are
  indexed directly (1, 256, 65536 rows); orders >= 3 hash their last k bytes (Fibonacci hashing)
  into 2**hash_bits rows, collisions unchecked. Every row also keeps its total ``n`` and its number
  of distinct bytes ``d``.
- Blending from order 0 up: P_k = (c_k + e_k * P_{k-1}) / (n_k + e_k), P_-1 uniform, with the
  escape e_k = d_k * (esc + esc_step * max(0, k - 3)) / 8 counts (orders with n_k = 0 are skipped).
  Computed top-down in fixed point: the mass R (2**36) still unassigned gives each order the
  coefficient R / (n_k + e_k) per count and passes on R * e_k / (n_k + e_k) (floor divisions);
  what is left after order 0 is spread evenly over the 256 bytes (a small floor; quantize
  floors every frequency at 1 anyway).
- Update: each order's count of the coded byte grows by ``inc``; when a count passes ``limit``
  the whole row is halved ((c + 1) >> 1), which keeps the model adaptive and the counts in a uint8.
- Batches: the tables are shared by all streams (more statistics); each stream keeps its own last
  8 bytes. Streams that update the same count in one step are merged (np.unique: the sum of their
  increments, saturating at 255), so the result does not depend on any processing order. A
  stream's weights therefore depend on the other streams of the batch; with S = 1 they depend on
  its own bytes only.

Row sums are at most 2**36 < 2**38 (coding.MAX_WEIGHT_SUM). Memory with the defaults: 16 MB
(order 2) + 3 x 64 MB (orders 3-5) of uint8 counts + 14 MB of row totals, about 225 MB, touched
lazily; ctx2 (orders 3-7 at 2**19 rows): 16 + 5 x 128 + 42 MB, about 700 MB (hashing touches most
pages after some 100 KB of input).
"""
from __future__ import annotations

import numpy as np

from . import kernels, schema
from .base import PredictorIdentity, Registered

DEFAULT_SETTINGS = {
    "max_order": 5,  # orders 0..max_order
    "hash_bits": 18,  # rows per hashed order (orders >= 3)
    "limit": 250,  # a count above this halves its row
    "inc": 1,  # count increment per coded byte
    "esc": 32,  # escape per distinct byte, in 1/8 counts, orders 0-3
    "esc_step": 8,  # added to esc per order above 3
}

# ctx2: the same model as an ensemble member. With an FS-LSTM beside it, the mix gains most when
# the context model reaches further and is sharper: orders to 7, twice the rows (fewer collisions)
# and low escapes. Alone it is worse than ctx1 (it is overconfident in new contexts). Chosen on
# trainpool shard 7 only (the mix of fslstm-small-v3 and it, with the match stage, ideal bits per
# byte against ctx1 there: C -3.5%, Wikipedia XML -1.5%, rst -1.2%, books -0.5%).
CTX2_SETTINGS = {"max_order": 7, "hash_bits": 19, "limit": 250, "inc": 1, "esc": 12,
                 "esc_step": 0}
DEFAULTS = {"ctx1": DEFAULT_SETTINGS, "ctx2": CTX2_SETTINGS}

# The ranges a header may ask for; limit must also lie in inc..255-inc (checked when built).
_RANGES = {"max_order": (0, 7), "hash_bits": (8, 20), "limit": (1, 254), "inc": (1, 127),
           "esc": (1, 4096), "esc_step": (0, 4096)}
SCHEMAS = {name: schema.Schema({k: schema.integer(*_RANGES[k], d[k]) for k in _RANGES})
           for name, d in DEFAULTS.items()}

_SHIFT = 3  # counts against escapes: escapes are in 1/8 counts
_MASS_BITS = 36
_HIST_MASK = np.uint64((1 << 56) - 1)
_HASH_MULT = 0x9E3779B97F4A7C15


class ContextModel(Registered):
    NAMES = tuple(DEFAULTS)
    # Streams share the count tables, so more of them cost almost nothing (trainpool shard 7,
    # 2 MB: 30 streams 2.0428 bpb at 110 KB/s, 64 streams 2.0431 at 127 KB/s, 128: 2.0435 at 121).
    MIN_STREAM_LEN = 1 << 14
    MAX_STREAMS = 64
    # False: step with the numpy reference methods instead of the compiled kernel (the same
    # integers; tests compare the two). Read at start().
    use_kernels = True

    def __init__(self, name: str = "ctx1", **settings) -> None:
        if name not in DEFAULTS:
            raise ValueError(f"unknown context model {name!r} (known: {', '.join(DEFAULTS)})")
        cfg = self.check_settings(name, settings)
        if not cfg["inc"] <= cfg["limit"] <= 255 - cfg["inc"]:
            raise ValueError("limit must be in inc..255-inc")
        self.settings = cfg
        self.identity = PredictorIdentity(name=name, settings=dict(cfg))

        K = cfg["max_order"] + 1
        self._K = K
        sizes, masks, mults, shifts = [], [], [], []
        for k in range(K):
            masks.append((1 << (8 * k)) - 1)
            if k <= 2:  # direct: row = context
                sizes.append(1 << (8 * k))
                mults.append(1)
                shifts.append(0)
            else:  # hashed: row = top hash_bits of context * golden-ratio constant (mod 2**64)
                sizes.append(1 << cfg["hash_bits"])
                mults.append(_HASH_MULT)
                shifts.append(64 - cfg["hash_bits"])
        self._rows_total = int(sum(sizes))
        self._offsets = np.array(np.cumsum([0] + sizes[:-1]), dtype=np.uint64)
        self._ctx_masks = np.array(masks, dtype=np.uint64)
        self._mults = np.array(mults, dtype=np.uint64)
        self._shifts = np.array(shifts, dtype=np.uint64)
        self._esc = np.array([cfg["esc"] + cfg["esc_step"] * max(0, k - 3) for k in range(K)],
                             dtype=np.int64)
        self._counts = None

    @classmethod
    def schema(cls, name: str) -> schema.Schema:
        return SCHEMAS[name]

    @classmethod
    def table_bytes(cls, settings: dict) -> int:
        k, hb = settings["max_order"], settings["hash_bits"]
        rows = sum(1 << (8 * i) for i in range(min(k, 2) + 1)) + max(0, k - 2) * (1 << hb)
        return rows * (256 + 16)

    @classmethod
    def from_identity(cls, name, settings, children, source):
        return cls(name, **settings)

    # -- interface ---------------------------------------------------------------------------
    def start(self, n_streams: int) -> np.ndarray:
        S = int(n_streams)
        if S < 0:
            raise ValueError("n_streams must be >= 0")
        # untouched pages are mapped lazily: memory grows with the contexts actually seen
        self._counts = kernels.lazy_zeros((self._rows_total, 256), np.uint8)
        self._flat = self._counts.reshape(-1)
        self._n = kernels.lazy_zeros(self._rows_total, np.int64)
        self._d = kernels.lazy_zeros(self._rows_total, np.int64)
        self._hist = np.zeros(S, dtype=np.uint64)
        self._kernel = self.use_kernels
        self._active = S
        if self._kernel:  # hist and rows keep S entries; the first A are the active streams'
            self._rows = np.zeros((S, self._K), dtype=np.int64)
            return self._kernel_step(np.zeros(S, dtype=np.int64), False)
        self._set_context(self._hist)
        return self._predict()

    def _kernel_step(self, s: np.ndarray, update: bool) -> np.ndarray:
        return kernels.ctx_step(self._counts, self._n, self._d, self._hist, self._rows, s,
                                self._ctx_masks, self._mults, self._shifts, self._offsets,
                                self._esc, self.settings["inc"], self.settings["limit"], update)

    def step(self, symbols: np.ndarray) -> np.ndarray:
        if self._counts is None:
            raise RuntimeError("step() before start()")
        s = np.ascontiguousarray(symbols, dtype=np.int64)
        A = s.shape[0]
        if s.ndim != 1 or A > self._active:
            raise ValueError("symbols must be a 1-D array no longer than the previous step's")
        if self._kernel:
            # raises ValueError on a non-byte before any update
            W = self._kernel_step(s, True) if A else np.zeros((0, 256), dtype=np.int64)
            self._active = A
            return W
        if A and (s.min() < 0 or s.max() > 255):
            raise ValueError("symbols must be bytes (0..255)")
        self._active = A
        if A == 0:
            self._hist = self._hist[:0]
            self._set_context(self._hist)
            return np.zeros((0, 256), dtype=np.int64)
        self._update(self._rows[:A], self._keys[:A], s)
        self._hist = ((self._hist[:A] << np.uint64(8)) | s.astype(np.uint64)) & _HIST_MASK
        self._set_context(self._hist)
        return self._predict()

    # -- internals ---------------------------------------------------------------------------
    def _set_context(self, hist: np.ndarray) -> None:
        h = ((hist[:, None] & self._ctx_masks) * self._mults) >> self._shifts
        h += self._offsets
        self._rows = h.view(np.int64)  # (A, K) row of each order's context
        self._keys = self._rows << 8  # index of the row's first count in the flat table

    def _update(self, rows: np.ndarray, keys: np.ndarray, s: np.ndarray) -> None:
        inc, limit = self.settings["inc"], self.settings["limit"]
        if rows.shape[0] == 1:
            # One stream: its K rows are distinct (one per order), no merging needed.
            r = rows[0]
            k = keys[0] + s[0]
            old = self._flat[k]
            new = old + np.uint8(inc)  # counts <= limit <= 255 - inc: no wrap
            self._flat[k] = new
            self._n[r] += inc
            self._d[r] += old == 0
            if new.max() > limit:
                self._halve(r[new > limit])
            return
        k, cnt = np.unique((keys + s[:, None]).ravel(), return_counts=True)
        old = self._flat[k].astype(np.int64)
        new = np.minimum(old + cnt * inc, 255)
        self._flat[k] = new
        r = k >> 8
        np.add.at(self._n, r, new - old)  # a row can appear with several bytes
        np.add.at(self._d, r, old == 0)
        over = new > limit
        if over.any():
            self._halve(np.unique(r[over]))

    def _halve(self, r: np.ndarray) -> None:
        c = (self._counts[r].astype(np.int64) + 1) >> 1  # rounds up: a seen byte stays seen
        self._counts[r] = c
        self._n[r] = c.sum(axis=1, dtype=np.int64)
        self._d[r] = np.count_nonzero(c, axis=1)

    def _predict(self) -> np.ndarray:
        rows = self._rows
        A, K = rows.shape
        if A == 0:
            return np.zeros((0, 256), dtype=np.int64)
        G = self._counts[rows]  # (A, K, 256) uint8
        a, left = self._coefficients(self._n[rows], self._d[rows])
        W = np.matmul(a[:, None, :], G)[:, 0, :]
        W += left[:, None]
        return W

    def _coefficients(self, n: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Blend coefficients (A, K) per count and the uniform share per byte (A,)."""
        A, K = n.shape
        empty = n == 0
        e = np.where(empty, 1, d * self._esc)  # an empty order passes R on unchanged...
        den = (n << _SHIFT) + e
        a = np.empty((A, K), dtype=np.int64)
        R = np.full(A, 1 << _MASS_BITS, dtype=np.int64)
        for k in range(K - 1, -1, -1):
            a[:, k] = (R << _SHIFT) // den[:, k]
            R = R * e[:, k] // den[:, k]
        a[empty] = 0  # ...and takes no share (its counts are all zero anyway)
        return a, R >> 8
