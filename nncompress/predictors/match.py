"""MatchStage: a long-range match model applied as a final stage on any predictor's weights.

All integer, so it is as portable as the predictor it wraps. A step is two compiled calls
(kernels.match_step before the wrapped predictor, kernels.match_apply after it, numba); the numpy
methods below are the reference they are tested against, step by step.

- Match model (as in lpaq): a hash of each stream's last ``min_len`` bytes points to where that
  context was last seen (in any stream: the table is shared). When a stream has no match it looks
  its context up, checks the candidate by comparing up to ``verify`` bytes backwards (a hash
  collision or a match shorter than min_len is dropped) and, if it holds, predicts the byte that
  followed the earlier occurrence. While the predictions come true the match grows by one byte per
  step; the first miss ends it. Positions are (stream, offset) pairs and a prediction is only made
  from a byte already coded, so encoder and decoder see the same history.
- SSE (secondary estimation) of the predicted byte: the probability p that the wrapped predictor
  gives the predicted byte (Q16) is put in one of 128 buckets on a log-odds-like integer scale, and
  with the match length class (20 classes) selects a cell of a shared table that has learnt how
  often such predictions came true. The cell's estimate q (Q16) replaces p; the other bytes keep
  their proportions and share 1 - q. A cell starts at its bucket's mean p (no change) and moves
  toward each outcome by 1/(n + 2) of the distance, n being the cell's count, floored at
  2**-rate.
- Batches: every stream has its own history and match; the tables are shared. Streams that insert
  the same hash in one step: the highest stream index wins. SSE updates of one step are computed
  from the same old values and summed (np.add.at), so no processing order matters.
"""
from __future__ import annotations

import numpy as np

from . import kernels, schema
from .base import Stage, stage_identity

# The match model's settings (MatchModel), under these names in the match stage's header; the cm
# stage records the same settings as match_min, match_bits and verify (cm.MATCH_KEYS).
MATCH_SETTINGS = {
    "min_len": schema.integer(2, 8, 6),       # bytes of context hashed
    "hash_bits": schema.integer(10, 22, 20),  # log2 of the entries in the shared position table
    "verify": schema.integer(2, 64, 32),      # bytes compared backwards when a match starts
}                                             # (and the longest it starts at)
SETTINGS = schema.Schema({
    **MATCH_SETTINGS,
    "rate": schema.integer(2, 12, 7),   # slowest SSE adaptation: 2**-rate of the distance per outcome
})
DEFAULT_SETTINGS = SETTINGS.defaults()

ARITH = "match-sse-v1"   # recorded in the header; bump it with any change of the arithmetic
Q_BITS = 16
P_BITS = 22
N_PB = 128                      # SSE probability buckets
N_LB = 20                       # match length classes
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
_OFF_BITS = 40                  # position code: stream << 40 | offset
_OFF_MASK = (1 << _OFF_BITS) - 1


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Exact bit length of non-negative int64 values < 2**53 (frexp of an integer is exact)."""
    return np.frexp(x.astype(np.float64))[1].astype(np.int64)


def _ilog4(x: np.ndarray) -> np.ndarray:
    """4 steps per octave: 4 * (bit_length - 1) + the two bits after the leading one (x >= 1)."""
    bl = _bit_length(x)
    frac = np.where(bl >= 3, (x >> np.maximum(bl - 3, 0)) & 3, (x << np.maximum(3 - bl, 0)) & 3)
    return 4 * (bl - 1) + frac


def p_bucket(p16: np.ndarray) -> np.ndarray:
    """Bucket 0..127 of a probability in Q16 (1..65535): the low half by log2(p), the high half
    by log2(1 - p), 4 buckets per octave each."""
    p16 = np.clip(p16, 1, (1 << Q_BITS) - 1)
    lo = np.minimum(_ilog4(p16), 63)
    hi = 127 - np.minimum(_ilog4((1 << Q_BITS) - p16), 63)
    return np.where(p16 < (1 << (Q_BITS - 1)), lo, hi)


def _bucket_means() -> np.ndarray:
    x = np.arange(1, 1 << Q_BITS, dtype=np.int64)
    b = p_bucket(x)
    counts = np.bincount(b, minlength=N_PB)
    tot = np.zeros(N_PB, dtype=np.int64)
    np.add.at(tot, b, x)
    # buckets no probability falls into (a few at the extremes) are never selected: 0
    return np.where(counts > 0, tot // np.maximum(counts, 1), 0)


def len_class(n: np.ndarray) -> np.ndarray:
    """Match length class: 1..15 as is, then one class per octave (16-31, 32-63, ...), 0 = none."""
    return np.where(n < 16, n, np.minimum(11 + _bit_length(n), N_LB - 1))


# Lookup tables of p_bucket (over every p16 that _apply can form, 0..2**16) and len_class (over
# every match length, 0..2**16) for the kernels.
P_BUCKET_OF = p_bucket(np.arange((1 << Q_BITS) + 1, dtype=np.int64))
LEN_CLASS_OF = len_class(np.arange((1 << 16) + 1, dtype=np.int64))


def _adapt_table(rate: int) -> np.ndarray:
    n = np.arange(1 << 10, dtype=np.int64)
    return np.maximum((1 << Q_BITS) // (n + 2), (1 << Q_BITS) >> rate)


class MatchModel:
    """The match model alone: each stream's history, the shared position table and each stream's
    current match. A user calls start(S), then per step predicted(a) (which byte each stream's
    match predicts), and after the step's bytes are known append(symbols) and follow(symbols)
    (or the kernels, with kernel_args() and predict_args()); seen(), length() and history_at()
    read its state. Settings: MATCH_SETTINGS (ranges checked by the stage that records them)."""

    def __init__(self, min_len: int, hash_bits: int, verify: int) -> None:
        if not min_len <= verify:
            raise ValueError("verify must be in min_len..64")
        self.min_len, self.hash_bits, self.verify = min_len, hash_bits, verify
        self._hist_mask = np.uint64((1 << (8 * min_len)) - 1)
        self._shift = np.uint64(64 - hash_bits)

    def start(self, S: int) -> None:
        self.buf = np.zeros((S, 1 << 12), dtype=np.uint8)
        self.n = np.zeros(S, dtype=np.int64)          # bytes seen per stream
        self.h = np.zeros(S, dtype=np.uint64)         # last min_len bytes
        self.ptr = np.full(S, -1, dtype=np.int64)     # code of the predicted byte, -1: none
        self.mlen = np.zeros(S, dtype=np.int64)
        self.table = np.full(1 << self.hash_bits, -1, dtype=np.int64)
        self.pred = np.zeros(S, dtype=np.int64)

    def grow(self) -> None:
        """Doubles the history buffer once it is full (every active stream has n[0] bytes or
        fewer: all start together and stream 0 is always active)."""
        if self.n.shape[0] and self.n[0] >= self.buf.shape[1]:
            grown = np.zeros((self.buf.shape[0], self.buf.shape[1] * 2), dtype=np.uint8)
            grown[:, :self.buf.shape[1]] = self.buf
            self.buf = grown

    def kernel_args(self) -> tuple:
        """The arrays and settings kernels._match_update takes after the symbols."""
        return (self.buf, self.n, self.h, self.ptr, self.mlen, self.table, self.pred,
                self._hist_mask, self._shift, self.min_len, self.verify)

    def predict_args(self) -> tuple:
        """The arrays the prediction kernels read: history, bytes seen, match pointer, match
        length and predicted byte per stream."""
        return (self.buf, self.n, self.ptr, self.mlen, self.pred)

    def seen(self, a: int) -> np.ndarray:
        """The number of bytes each of the first a streams has seen."""
        return self.n[:a]

    def length(self, streams: np.ndarray) -> np.ndarray:
        """The current match length of these streams (0: no match)."""
        return self.mlen[streams]

    def history_at(self, pos: np.ndarray) -> np.ndarray:
        """Byte pos[s] of stream s's history, for the first len(pos) streams (pos is clipped to
        what the history buffer holds; the caller asks only for bytes already seen)."""
        pos = np.minimum(pos, self.buf.shape[1] - 1)
        return self.buf[np.arange(len(pos)), pos]

    def predicted(self, a: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the first a streams that have a match, the byte each match predicts)."""
        on = np.nonzero(self.mlen[:a] > 0)[0]
        code = self.ptr[on]
        b = self.buf[code >> _OFF_BITS, code & _OFF_MASK].astype(np.int64)
        self.pred[on] = b
        return on, b

    def append(self, symbols: np.ndarray) -> None:
        a = len(symbols)
        n = self.n[:a]
        if n.max(initial=0) >= self.buf.shape[1]:
            grown = np.zeros((self.buf.shape[0], self.buf.shape[1] * 2), dtype=np.uint8)
            grown[:, :self.buf.shape[1]] = self.buf
            self.buf = grown
        self.buf[np.arange(a), n] = symbols
        self.n[:a] += 1
        self.h[:a] = ((self.h[:a] << np.uint64(8)) | symbols.astype(np.uint64)) & self._hist_mask

    def follow(self, symbols: np.ndarray) -> None:
        """After append(): matches that predicted right grow, the others end; streams without a
        match look their context up; this position is inserted."""
        a = len(symbols)
        mlen, ptr = self.mlen[:a], self.ptr[:a]
        # 1. matches that predicted right grow, the others end
        hit = (mlen > 0) & (self.pred[:a] == symbols)
        nxt = ptr + 1
        s_of, off = nxt >> _OFF_BITS, nxt & _OFF_MASK
        ok = hit & (off < self.n[s_of])
        mlen[:] = np.where(ok, np.minimum(mlen + 1, 1 << 16), 0)
        ptr[:] = np.where(ok, nxt, -1)
        # 2. streams without a match look their context up (all lookups before any insert)
        ready = self.n[:a] >= self.min_len
        idx = ((self.h[:a] * _HASH_MULT) >> self._shift).astype(np.int64)
        look = np.nonzero((mlen == 0) & ready)[0]
        if len(look):
            cand = self.table[idx[look]]
            s2, o2 = cand >> _OFF_BITS, cand & _OFF_MASK
            valid = (cand >= 0) & (o2 < self.n[np.maximum(s2, 0)])
            look, s2, o2 = look[valid], s2[valid], o2[valid]
            if len(look):
                length = np.zeros(len(look), dtype=np.int64)
                alive = np.ones(len(look), dtype=bool)
                n_look = self.n[look]
                for k in range(1, self.verify + 1):
                    inside = (o2 - k >= 0) & (n_look - k >= 0)
                    same = inside & (self.buf[s2, np.maximum(o2 - k, 0)]
                                     == self.buf[look, np.maximum(n_look - k, 0)])
                    alive &= same
                    length += alive
                    if not alive.any():
                        break
                good = length >= self.min_len
                mlen[look[good]] = length[good]
                ptr[look[good]] = (s2[good] << _OFF_BITS) | o2[good]
        # 3. insert this position for every ready stream; the highest stream wins a shared slot
        ins = np.nonzero(ready)[0]
        if len(ins):
            keys = idx[ins]
            _, last = np.unique(keys[::-1], return_index=True)
            pick = ins[len(ins) - 1 - last]
            self.table[idx[pick]] = (pick << _OFF_BITS) | self.n[pick]


class MatchStage(Stage):
    NAMES = ("match",)
    ARITH = ARITH
    SETTINGS = SETTINGS
    CHILDREN = "inner"
    ARITH_REFUSED = "this file's {name} stage is not understood by this version of nncompress"
    # False: step with the numpy reference methods instead of the compiled kernels (the same
    # integers; tests compare the two). Read at start().
    use_kernels = True

    def __init__(self, inner, name: str = "match", **settings) -> None:
        cfg = self.check_settings(name, settings)
        self.model = MatchModel(cfg["min_len"], cfg["hash_bits"], cfg["verify"])
        self.inner = inner
        self.cfg = cfg
        self.identity = stage_identity(name, inner, {**cfg, "arith": ARITH})
        self._adapt = _adapt_table(cfg["rate"])

    @classmethod
    def table_bytes(cls, settings: dict) -> int:
        return 8 << settings["hash_bits"]

    # -- state -------------------------------------------------------------------------------
    def start(self, n_streams: int) -> np.ndarray:
        S = n_streams
        self.model.start(S)
        means = _bucket_means()
        self.q = np.tile(means, N_LB).astype(np.int64)  # (N_LB * N_PB,)
        self.qn = np.zeros(N_LB * N_PB, dtype=np.int64)
        self.cell = np.full(S, -1, dtype=np.int64)
        self._kernel = self.use_kernels
        return self._out(self.inner.start(S), S)

    def _out(self, w: np.ndarray, a: int) -> np.ndarray:
        if not self._kernel:
            return self._apply(w, a)
        m = self.model
        return kernels.match_apply(np.ascontiguousarray(w, dtype=np.int64), m.buf, m.ptr, m.mlen,
                                   m.pred, self.cell, self.q, P_BUCKET_OF, LEN_CLASS_OF)

    def step(self, symbols: np.ndarray) -> np.ndarray:
        symbols = np.ascontiguousarray(symbols, dtype=np.int64)
        a = len(symbols)
        if self._kernel:
            if a:
                self.model.grow()
                kernels.match_step(symbols, self.cell, self.q, self.qn, self._adapt,
                                   *self.model.kernel_args())
            return self._out(self.inner.step(symbols), a)
        self._learn(symbols)
        self.model.append(symbols)
        self.model.follow(symbols)
        return self._apply(self.inner.step(symbols), a)

    # -- SSE ---------------------------------------------------------------------------------
    def _learn(self, symbols: np.ndarray) -> None:
        a = len(symbols)
        cell = self.cell[:a]
        used = cell >= 0
        if not used.any():
            return
        c = cell[used]
        hit = (symbols[used] == self.model.pred[:a][used]).astype(np.int64) << Q_BITS
        rate = self._adapt[np.minimum(self.qn[c], len(self._adapt) - 1)]
        delta = ((hit - self.q[c]) * rate) >> Q_BITS      # floor: exact and order-free
        np.add.at(self.q, c, delta)
        np.add.at(self.qn, c, 1)
        np.clip(self.q, 32, (1 << Q_BITS) - 32, out=self.q)

    def _apply(self, w: np.ndarray, a: int) -> np.ndarray:
        w = np.asarray(w, dtype=np.int64)
        self.cell[:a] = -1
        on, b = self.model.predicted(a)
        if len(on) == 0:
            return w
        ws = w[on]
        total = np.maximum(ws.sum(axis=1), 1)
        pb = ws[np.arange(len(on)), b]
        p16 = (pb << Q_BITS) // total
        cell = len_class(self.model.mlen[on]) * N_PB + p_bucket(p16)
        self.cell[on] = cell
        q = self.q[cell]
        # Q22 table: the predicted byte gets q, the others share the rest in their proportions.
        rest = np.maximum(total - pb, 1)
        others = 1 + (ws * (((1 << Q_BITS) - q) << (P_BITS - Q_BITS))[:, None]) // rest[:, None]
        others[np.arange(len(on)), b] = q << (P_BITS - Q_BITS)
        out = w.copy()
        out[on] = others
        return out
