"""CMStage: binary context mixing over the byte's bit tree, as a final stage on any predictor.

All integer (int64 arithmetic on small integer tables, floor shifts and divisions), so it is as
portable as the predictor it wraps. Arithmetic tag ``cm-v1``: any change of what follows needs a
new tag. A step is two compiled calls (kernels.cm_step before the wrapped predictor,
kernels.cm_predict after it, numba); the numpy methods below are the reference they are tested
against, step by step.

A byte is seen as 8 binary decisions, most significant bit first: the nodes of a binary tree,
numbered 1..255 in heap order (node 1 decides bit 7; node j's children are 2j for a 0 and 2j + 1
for a 1). The wrapped predictor's distribution gives P(bit = 1) at every node; the stage refines
it at the 15 nodes of the high nibble and at the 15 nodes of each of the ``nibbles`` low-nibble
subtrees whose high nibble the wrapped predictor finds most likely (ties: the lower nibble; the
match model's predicted byte, if any, always has its subtree refined), and keeps the wrapped
predictor's P elsewhere: with 4 of 16, about a quarter of the work of the whole
tree for 0.02-0.04% more bits on shard-7 samples. Its inputs at a refined node (all in the
"stretch" domain, ln(p / (1 - p)) in Q8, |x| <= 2047):

- the wrapped predictor: its byte distribution summed over each node's two subtrees;
- 12 adaptive context models, each with one probability per node of its context: order 0 and
  order 1 (direct tables), orders 2, 3, 4 and 6, the current word (letters, case-folded), the
  current word with the previous one, two sparse contexts (the bytes 1, 3, 5, 7 and 2, 4, 6, 8
  back), the byte above (same column of the previous line) with the previous byte, and the line's
  indentation (leading blanks, up to 63) with the last two bytes. Hashed contexts keep a row of 16 probabilities per (context, nibble): the high nibble's
  row and, for the low nibble, one row per possible high nibble; a row carries a 15-bit check
  taken from the hash, and a row whose check differs reads as empty and is taken over when
  updated. Each gives two inputs: stretch(p), and stretch(p) * min(n, 15) / 16 (its confidence,
  n being the number of updates), both 0 where the context is new. A probability moves toward
  each outcome by 2 / (2n + 3) of the distance, n capped at ``limit``;
- the match model (predictors/match.MatchModel, its settings recorded as ``match_min``,
  ``match_bits`` and ``verify``): where the last ``match_min`` bytes occurred before,
  the byte that followed is predicted; on that byte's path the input is +-stretch(q), q being how
  often predictions of this match length came true (learnt), and 0 elsewhere;
- a bias (256).

Two logistic mixers (lpaq-style neural mixing: p = squash(w . x / 2**16), w += x * err * lr /
2**lr_shift after each bit, err = bit - p in Q12) each choose a weight set: the first by the
node's depth and the match state (none, shorter than 16, longer), the second by the depth and the
class of the previous byte (lower-case, upper-case, space or newline, other); their outputs are
averaged in the stretch domain. An APM (secondary estimation with 33 interpolated cells per
context, rate 2**-apm_rate) refines the result by the previous byte and the node, and the final
P(bit) is (p_mix * (4 - apm_mix) + p_apm * apm_mix) / 4 in Q12, clipped to 1..4095. The weights
given to the coder are the 256 leaf probabilities (products along each path, floor-shifted), which
sum to 2**36.

The weights start at 1 for the wrapped predictor and 0 for everything else, so the stage first
repeats the wrapped predictor and departs from it only as far as the mixing learns to.

Batches: all tables and weights are shared by the streams (each stream keeps its own history and
word hashes). The updates of one step are computed from the same old values and summed
(counters, APM cells, mixer weights), and a row whose check two streams want to set goes to the
highest stream index, so no processing order matters. squash() is lpaq's 33-point interpolated
table and stretch() its inverse, built from integers only.
"""
from __future__ import annotations

import numpy as np

from . import kernels, schema
from .base import Stage, stage_identity
from .match import LEN_CLASS_OF, MATCH_SETTINGS, MatchModel, len_class, N_LB

ARITH = "cm-v1"

# The header keys of the match model's settings (match.MATCH_SETTINGS) in this stage.
MATCH_KEYS = {"match_min": "min_len", "match_bits": "hash_bits", "verify": "verify"}
SETTINGS = schema.Schema({
    "hash_bits": schema.integer(10, 20, 18),  # log2 rows (of 16 probabilities) per hashed context
    "limit": schema.integer(1, 255, 127),     # counters' adaptation stops slowing after this many
    "lr": schema.integer(1, 64, 2),           # mixer learning rate, in units of 2**-lr_shift
    "lr_shift": schema.integer(8, 20, 13),
    "apm_rate": schema.integer(2, 12, 7),
    "apm_mix": schema.integer(0, 4, 3),       # quarters of the APM in the final probability
    "nibbles": schema.integer(1, 16, 4),      # low-nibble subtrees refined per byte
    **{key: MATCH_SETTINGS[name] for key, name in MATCH_KEYS.items()},
})
DEFAULT_SETTINGS = SETTINGS.defaults()

# Hashed contexts: masks over the last 8 bytes (byte k back is bits 8(k-1)..8k-1) and two word
# contexts. Orders 0 and 1 are direct tables.
_ORDER_MASKS = [0xFFFF, 0xFFFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFF]          # orders 2, 3, 4, 6
_SPARSE_MASKS = [0x00FF00FF00FF00FF, 0xFF00FF00FF00FF00]              # bytes 1,3,5,7 / 2,4,6,8
N_HASHED = len(_ORDER_MASKS) + 2 + len(_SPARSE_MASKS) + 2        # + column and indentation
N_CTX = 2 + N_HASHED
N_INPUTS = 1 + 2 * N_CTX + 1 + 1      # wrapped predictor, contexts, match, bias
W_LIMIT = 1 << 22

_SQ = [1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047, 2549, 2994,
       3348, 3607, 3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094]


def _squash_int(d: int) -> int:
    """1 / (1 + e^-x) in Q12 for x = d / 256 (lpaq's interpolation of 33 points), 1..4095."""
    if d > 2047:
        return 4095
    if d < -2047:
        return 1
    w, i = d & 127, (d >> 7) + 16
    return (_SQ[i] * (128 - w) + _SQ[i + 1] * w + 64) >> 7


SQUASH = np.array([_squash_int(d) for d in range(-2047, 2048)], dtype=np.int64)


def _stretch_table() -> np.ndarray:
    """STRETCH[p] for p in Q12: the smallest d whose squash reaches p (the inverse of squash)."""
    t = np.zeros(4096, dtype=np.int64)
    pi = 0
    for x in range(-2047, 2048):
        v = _squash_int(x)
        t[pi:v + 1] = x
        pi = max(pi, v + 1)
    t[pi:] = 2047
    return t


STRETCH = _stretch_table()


def squash(x: np.ndarray) -> np.ndarray:
    return SQUASH[np.clip(x, -2047, 2047) + 2047]


_DEPTHS = np.arange(8)
DEPTH = np.array([j.bit_length() - 1 for j in range(1, 256)], dtype=np.int64)
# Nibble rows: a hashed context has the high nibble's row (slot 0) and one row per high nibble k
# for the low nibble (slot 1 + k); node j (1..255) sits at position LOCAL[j-1] (1..15) of its row.
LOCAL = np.array([j if j < 16 else (1 << (j.bit_length() - 5)) + (j & ((1 << (j.bit_length() - 5)) - 1))
                  for j in range(1, 256)], dtype=np.int64)
_ROW_SEL = np.where(_DEPTHS < 4, 0, 1)      # path depth -> which of its two rows (high, low)
_COLS = np.arange(255)
# The refined nodes of a byte: the high nibble's 15, then 15 per selected high nibble h, in the
# order of LOCAL (node (15 + h) * _LMULT + _LOW); their row slot, position in the row and depth.
_HIGH = np.arange(1, 16)
_LOW = np.arange(1, 16)
_LMULT = np.array([1 << (l.bit_length() - 1) for l in range(1, 16)], dtype=np.int64)
_RSLOT = np.concatenate([np.zeros(15, dtype=np.int64)] + [np.full(15, 1 + k) for k in range(16)])
_LOCM = np.tile(np.arange(1, 16), 17)
_DEPTHM = np.concatenate([DEPTH[:15]] + [4 + DEPTH[:15]] * 16)

_U = np.uint64
_H1 = _U(0x9E3779B97F4A7C15)
_H2 = _U(0xD6E8FEB86659FD93)
_H3 = _U(0xA0761D6478BD642F)
_FNV = _U(0x100000001B3)
_HALF = (1 << 15) << 8       # a packed counter at p = 1/2, n = 0
_RATE = np.array([(1 << 16) * 2 // (2 * n + 3) for n in range(256)], dtype=np.int64)


def tree_sums(w: np.ndarray) -> np.ndarray:
    """Weights (A, 256) -> (A, 512): entry j >= 1 is the total weight under node j (256 + b:
    byte b)."""
    A = w.shape[0]
    T = np.zeros((A, 512), dtype=np.int64)
    T[:, 256:] = w
    for d in range(7, -1, -1):
        lo, hi = 1 << d, 1 << (d + 1)
        T[:, lo:hi] = T[:, 2 * lo:2 * hi:2] + T[:, 2 * lo + 1:2 * hi:2]
    return T


def tree_p1(w: np.ndarray, T: np.ndarray = None) -> np.ndarray:
    """Weights (A, 256), non-negative, row sums < 2**50 -> P(bit = 1) at nodes 1..255 in Q12,
    clipped to 1..4095 (A, 255)."""
    T = tree_sums(w) if T is None else T
    return np.clip((T[:, 3::2] << 12) // np.maximum(T[:, 1:256], 1), 1, 4095)


def leaves(p1: np.ndarray) -> np.ndarray:
    """P(bit = 1) at nodes 1..255 in Q12 (A, 255) -> byte weights (A, 256) summing to 2**36."""
    A = p1.shape[0]
    L = np.zeros((A, 512), dtype=np.int64)
    L[:, 1] = 1 << 36
    for d in range(8):
        lo, hi = 1 << d, 1 << (d + 1)
        parent = L[:, lo:hi]
        one = (parent * p1[:, lo - 1:hi - 1]) >> 12
        L[:, 2 * lo + 1:2 * hi:2] = one
        L[:, 2 * lo:2 * hi:2] = parent - one
    return L[:, 256:]


def _byte_class(c: np.ndarray) -> np.ndarray:
    return np.select([(c >= 97) & (c <= 122), (c >= 65) & (c <= 90), (c == 32) | (c == 10)],
                     [0, 1, 2], 3)


def _merge(idx: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct indices, the sum of their deltas and their number of updates."""
    uniq, inv = np.unique(idx, return_inverse=True)
    total = np.zeros(len(uniq), dtype=np.int64)
    np.add.at(total, inv, delta)
    return uniq, total, np.bincount(inv, minlength=len(uniq))


class CMStage(Stage):
    NAMES = ("cm",)
    ARITH = ARITH
    SETTINGS = SETTINGS
    CHILDREN = "inner"
    ARITH_REFUSED = "this file's {name} stage is not understood by this version of nncompress"
    # False: step with the numpy reference methods instead of the compiled kernels (the same
    # integers; tests compare the two). Read at start().
    use_kernels = True

    def __init__(self, inner, name: str = "cm", **settings) -> None:
        cfg = self.check_settings(name, settings)
        self.match = MatchModel(**{name_: cfg[key] for key, name_ in MATCH_KEYS.items()})
        self.inner = inner
        self.cfg = cfg
        self.identity = stage_identity(name, inner, {**cfg, "arith": ARITH})

    @classmethod
    def table_bytes(cls, settings: dict) -> int:
        return (10 << settings["hash_bits"]) * 64 + (8 << settings["match_bits"]) + (64 << 20)

    # -- state -------------------------------------------------------------------------------
    def start(self, n_streams: int) -> np.ndarray:
        S = int(n_streams)
        R = 1 << self.cfg["hash_bits"]
        # Counters are packed as p << 8 | n (p in Q16, n the update count). Hashed rows are 16
        # int32 (64 bytes): the check in entry 0 (0: empty) and 15 counters; zero-filled, so
        # pages are only mapped once touched.
        self.H = kernels.lazy_zeros(N_HASHED * R * 16, np.int32)
        self.Hrows = self.H.reshape(-1, 16)
        self.Dt = np.full(257 * 256, _HALF, dtype=np.int32)   # rows 0-255: order 1; 256: order 0
        cells = (squash((np.arange(33) - 16) * 128) << 4).astype(np.int64)   # Q16
        self.apm = kernels.lazy_zeros(256 * 255 * 33, np.int64)           # (c1, node, cell)
        self.apm.reshape(256 * 255, 33)[:] = cells
        self.W1 = np.zeros((24, N_INPUTS), dtype=np.int64)
        self.W2 = np.zeros((32, N_INPUTS), dtype=np.int64)
        self.W1[:, 0] = self.W2[:, 0] = 1 << 16
        self.match.start(S)
        self.mq = np.full(N_LB, 1 << 15, dtype=np.int64)   # P(match prediction right), Q16
        self.mqn = np.zeros(N_LB, dtype=np.int64)
        self.hist = np.zeros(S, dtype=np.uint64)
        self.word = np.zeros(S, dtype=np.uint64)
        self.word1 = np.zeros(S, dtype=np.uint64)
        self.line = np.zeros(S, dtype=np.int64)         # where the current line starts
        self.prev_line = np.zeros(S, dtype=np.int64)    # where the previous one started
        self.prev_len = np.zeros(S, dtype=np.int64)     # its length with its newline
        self.indent = np.zeros(S, dtype=np.int64)
        self.leading = np.ones(S, dtype=bool)           # still in the line's leading blanks
        self._kernel = self.use_kernels
        if self._kernel:
            # what a prediction leaves for the next step's learning, per stream (the first a
            # rows valid): the nodes' inputs (input-major per node) and the mixers' outputs
            K = self.cfg["nibbles"]
            M = 15 + 15 * K
            self.p1 = np.zeros((S, 255), dtype=np.int64)
            self.hn = np.zeros((S, K), dtype=np.int64)
            self.hc = np.zeros((S, N_HASHED), dtype=np.uint64)
            self.X = np.zeros((S, M, N_INPUTS), dtype=np.int32)
            self.pm1 = np.zeros((S, M), dtype=np.int64)
            self.pm2 = np.zeros((S, M), dtype=np.int64)
            self.apm_cell = np.zeros((S, M), dtype=np.int64)
            self.set1 = np.zeros(S, dtype=np.int64)
            self.set2 = np.zeros(S, dtype=np.int64)
            self.c1 = np.zeros(S, dtype=np.int64)
            self.mcls = np.full(S, -1, dtype=np.int64)   # match length class, -1: no match
        return self._predict(np.asarray(self.inner.start(S), dtype=np.int64))

    def step(self, symbols: np.ndarray) -> np.ndarray:
        s = np.ascontiguousarray(symbols, dtype=np.int64)
        a = len(s)
        if self._kernel:
            if a:
                self.match.grow()
                c = self.cfg
                kernels.cm_step(s, self.H, self.Dt, self.apm, self.W1, self.W2, self.mq, self.mqn,
                                self.hn, self.hc, self.X, self.pm1, self.pm2, self.apm_cell,
                                self.set1, self.set2, self.c1, self.mcls,
                                *self.match.kernel_args(),
                                self.hist, self.word, self.word1, self.line, self.prev_line,
                                self.prev_len, self.indent, self.leading,
                                c["nibbles"], c["hash_bits"], c["limit"], c["lr"], c["lr_shift"],
                                c["apm_rate"], _RATE)
            return self._predict(np.asarray(self.inner.step(s), dtype=np.int64))
        if a:
            self._learn(s)
            self.match.append(s)
            self.match.follow(s)
            self._advance(s)
        return self._predict(np.asarray(self.inner.step(s), dtype=np.int64))

    # -- prediction --------------------------------------------------------------------------
    def _contexts(self, a: int) -> None:
        h = self.hist[:a]
        hashes = [((h & _U(m)) + _U(i + 1)) * _H1 for i, m in enumerate(_ORDER_MASKS)]
        hashes.append((self.word[:a] + _U(77)) * _H3)
        hashes.append((self.word[:a] * _U(31) + self.word1[:a] + _U(99)) * _H2)
        hashes += [((h & _U(m)) + _U(1234 + i)) * _H2 for i, m in enumerate(_SPARSE_MASKS)]
        # the byte above (same column of the previous line) with the previous byte
        col = self.match.seen(a) - self.line[:a]
        inside = col < self.prev_len[:a]
        pos = np.where(inside, self.prev_line[:a] + col, 0)
        above = np.where(inside, self.match.history_at(pos), 0).astype(np.uint64)
        hashes.append(((above << _U(8)) + (h & _U(255)) + _U(999)) * _H2)
        # the line's indentation (leading spaces and tabs, up to 63) with the last two bytes
        hashes.append(((self.indent[:a].astype(np.uint64) << _U(16)) + (h & _U(0xFFFF))
                       + _U(4242)) * _H1)
        hc = np.stack(hashes, axis=1)                                  # (a, N_HASHED)
        x = (hc[:, :, None] + np.arange(17, dtype=np.uint64)[None, None, :] * _H3) * _H1
        x ^= x >> _U(29)
        hb = self.cfg["hash_bits"]
        rows = (x >> _U(64 - hb)).astype(np.int64)
        self.rows = rows + (np.arange(N_HASHED, dtype=np.int64) << hb)[None, :, None]
        self.chks = (((x >> _U(8)) & _U(0x7FFF)) + _U(1)).astype(np.int64)   # 1..32768
        self.c1 = (h & _U(255)).astype(np.int64)

    def _predict(self, w: np.ndarray) -> np.ndarray:
        if self._kernel:
            m, c = self.match, self.cfg
            return kernels.cm_predict(
                np.ascontiguousarray(w, dtype=np.int64), self.hist, self.word, self.word1,
                self.line, self.prev_line, self.prev_len, self.indent,
                *m.predict_args(), self.H, self.Dt, self.apm, self.W1, self.W2,
                self.mq, self.p1, self.hn, self.hc, self.X, self.pm1, self.pm2, self.apm_cell,
                self.set1, self.set2, self.c1, self.mcls,
                c["nibbles"], c["hash_bits"], c["apm_mix"], STRETCH, SQUASH, LEN_CLASS_OF)
        a = w.shape[0]
        K = self.cfg["nibbles"]
        self._contexts(a)
        ar = np.arange(a)
        T = tree_sums(w)
        p_in = tree_p1(w, T)
        # the K most likely high nibbles under the wrapped predictor (ties: the lower nibble);
        # where the match model predicts a byte, its high nibble replaces the K-th if missing
        hn = np.argsort(-T[:, 16:32], axis=1, kind="stable")[:, :K]          # (a, K)
        on, pred = self.match.predicted(a)
        if len(on):
            mh = pred >> 4
            missing = ~(hn[on] == mh[:, None]).any(axis=1)
            hn[on[missing], K - 1] = mh[missing]
        sel = np.concatenate([np.broadcast_to(_HIGH, (a, 15)),
                              ((15 + hn)[:, :, None] * _LMULT + _LOW).reshape(a, 15 * K)], axis=1)
        M = sel.shape[1]
        rslot, locm, depthm = _RSLOT[:M], _LOCM[:M], _DEPTHM[:M]
        kinds = np.concatenate([np.zeros((a, 1), dtype=np.int64), 1 + hn], axis=1)  # (a, 1 + K)
        rows = self.rows[ar[:, None, None], np.arange(N_HASHED)[None, :, None], kinds[:, None, :]]
        chks = self.chks[ar[:, None, None], np.arange(N_HASHED)[None, :, None], kinds[:, None, :]]
        G = self.Hrows[rows]                                           # (a, N_HASHED, 1 + K, 16)
        valid = (G[:, :, :, 0] == chks)[:, :, rslot]
        c = np.empty((a, N_CTX, M), dtype=np.int64)
        c[:, 0] = self.Dt[256 * 256 + sel]
        c[:, 1] = self.Dt[(self.c1 << 8)[:, None] + sel]
        c[:, 2:] = G[:, :, rslot, locm] * valid
        n = c & 255
        # inputs, input-major: (a, N_INPUTS, M)
        X = np.empty((a, N_INPUTS, M), dtype=np.float64)
        X[:, 0] = STRETCH[p_in[ar[:, None], sel - 1]]
        st = STRETCH[c >> 12] * (n > 0)
        X[:, 1:1 + N_CTX] = st
        X[:, 1 + N_CTX:1 + 2 * N_CTX] = (st * np.minimum(n, 15)) >> 4
        X[:, -1] = 256
        mstate = np.zeros(a, dtype=np.int64)
        self.m_on, self.m_pred = on, pred
        self.m_cls = len_class(self.match.length(on))
        xm = np.zeros((a, 256), dtype=np.int64)
        if len(on):
            path = (256 + pred[:, None]) >> (8 - _DEPTHS[None, :])
            bit = (pred[:, None] >> (7 - _DEPTHS[None, :])) & 1
            q = STRETCH[self.mq[self.m_cls] >> 4][:, None]
            xm[on[:, None], path] = np.where(bit == 1, q, -q)
            mstate[on] = np.where(self.match.length(on) < 16, 1, 2)
        X[:, 1 + 2 * N_CTX] = xm[ar[:, None], sel]
        # two mixers, a weight set per (stream class, depth): every node's products with the 8
        # depths' weights of both sets in one float64 product, exact (|x| < 2**11, |w| <= 2**22,
        # N_INPUTS terms: every partial sum is an integer below 2**38), then each node's depth
        set1 = mstate << 3
        set2 = _byte_class(self.c1) << 3
        Wsel = np.concatenate([self.W1[set1[:, None] + _DEPTHS], self.W2[set2[:, None] + _DEPTHS]],
                              axis=1).astype(np.float64)               # (a, 16, N)
        prod = np.matmul(Wsel, X)                                      # (a, 16, M)
        cols = _COLS[:M]
        dot1 = np.clip(prod[:, depthm, cols].astype(np.int64) >> 16, -2047, 2047)
        dot2 = np.clip(prod[:, 8 + depthm, cols].astype(np.int64) >> 16, -2047, 2047)
        dot = (dot1 + dot2) >> 1
        pm = squash(dot)
        # APM by previous byte and node: interpolate between the two cells around stretch(p)
        s = dot + 2048
        lo, frac = s >> 7, s & 127
        base = ((self.c1 * 255)[:, None] + sel - 1) * 33
        pa = ((self.apm[base + lo] * (128 - frac) + self.apm[base + lo + 1] * frac) >> 7) >> 4
        mix = self.cfg["apm_mix"]
        p1 = p_in
        p1[ar[:, None], sel - 1] = np.clip((pm * (4 - mix) + pa * mix) >> 2, 1, 4095)
        self.X, self.set1, self.set2, self.hn, self.p1 = X, set1, set2, hn, p1
        self.pm1, self.pm2 = squash(dot1), squash(dot2)
        self.apm_cell = base + lo + (frac >> 6)
        return leaves(p1)

    # -- learning ----------------------------------------------------------------------------
    def _learn(self, s: np.ndarray) -> None:
        a = len(s)
        path = ((256 + s[:, None]) >> (8 - _DEPTHS[None, :])) - 1       # (a, 8) node - 1
        bit = (s[:, None] >> (7 - _DEPTHS[None, :])) & 1
        self._learn_hashed(s, path, bit)
        # direct orders 0 and 1
        c1 = self.c1[:a]
        idx = np.concatenate([(256 * 256 + 1 + path).ravel(), ((c1 << 8)[:, None] + 1 + path).ravel()])
        self._count(self.Dt, idx, np.concatenate([bit.ravel(), bit.ravel()]))
        # where the path's nodes were refined: the high nibble's always, the low nibble's when
        # its high nibble was among the selected ones
        k = np.argmax(self.hn[:a] == (s >> 4)[:, None], axis=1)
        found = self.hn[:a][np.arange(a), k] == (s >> 4)
        pos = np.where(_DEPTHS[None, :] < 4, path, 15 + 15 * k[:, None] + LOCAL[path] - 1)
        done = (_DEPTHS[None, :] < 4) | found[:, None]                  # (a, 8)
        ra, rd = np.nonzero(done)
        pos, bitd = pos[ra, rd], bit[ra, rd]
        # mixers: the weight set of a path node is the stream's set plus the node's depth
        x = self.X[ra, :, pos].astype(np.int64)                         # (m, N)
        lr, shift = self.cfg["lr"], self.cfg["lr_shift"]
        for W, pm, sets in ((self.W1, self.pm1, self.set1), (self.W2, self.pm2, self.set2)):
            err = ((bitd << 12) - pm[ra, pos]) * lr
            np.add.at(W, sets[ra] + rd, (x * err[:, None]) >> shift)
            np.clip(W, -W_LIMIT, W_LIMIT, out=W)
        # APM
        cell = self.apm_cell[ra, pos]
        uniq, total, _ = _merge(cell, ((bitd << 16) - self.apm[cell]) >> self.cfg["apm_rate"])
        self.apm[uniq] = np.clip(self.apm[uniq] + total, 0, 65535)
        # match hit rates by length class
        on = self.m_on[self.m_on < a]
        if len(on):
            cls = self.m_cls[:len(on)]
            hit = (self.m_pred[:len(on)] == s[on]).astype(np.int64)
            rate = _RATE[np.minimum(self.mqn[cls], 255)]
            uniq, total, cnt = _merge(cls, (((hit << 16) - self.mq[cls]) * rate) >> 16)
            self.mq[uniq] = np.clip(self.mq[uniq] + total, 64, 65472)
            self.mqn[uniq] += cnt

    def _learn_hashed(self, s: np.ndarray, path: np.ndarray, bit: np.ndarray) -> None:
        a = len(s)
        ar, lo = np.arange(a), 1 + (s >> 4)
        rows = np.stack([self.rows[:a, :, 0], self.rows[ar, :, lo]], axis=2)          # (a, N_HASHED, 2)
        chks = np.stack([self.chks[:a, :, 0], self.chks[ar, :, lo]], axis=2)
        r, c = rows.ravel(), chks.ravel()
        chk = self.H[r << 4]
        stale = chk != c
        if stale.any():  # take the rows over; the highest stream index wins a shared row
            rs, cs = r[stale], c[stale]
            _, last = np.unique(rs[::-1], return_index=True)
            pick = len(rs) - 1 - last
            self.Hrows[rs[pick]] = _HALF
            self.H[rs[pick] << 4] = cs[pick]
            chk = self.H[r << 4]
        ok = (chk == c).reshape(a, N_HASHED, 2)
        row8 = rows[:, :, _ROW_SEL]
        ok8 = ok[:, :, _ROW_SEL]
        idx = ((row8 << 4) + LOCAL[path][:, None, :])[ok8]
        y = np.broadcast_to(bit[:, None, :], (a, N_HASHED, 8))[ok8]
        self._count(self.H, idx, y)

    def _count(self, T: np.ndarray, idx: np.ndarray, y: np.ndarray) -> None:
        """Moves each packed counter T[idx] toward its outcome y and counts the update."""
        c = T[idx].astype(np.int64)
        p, n = c >> 8, c & 255
        rate = _RATE[np.minimum(n, self.cfg["limit"])]
        uniq, total, cnt = _merge(idx, (((y << 16) - p) * rate) >> 16)
        c = T[uniq].astype(np.int64)
        p = np.clip((c >> 8) + total, 32, 65504)
        T[uniq] = (p << 8) | np.minimum((c & 255) + cnt, 255)

    def _advance(self, s: np.ndarray) -> None:
        a = len(s)
        self.hist = (self.hist[:a] << _U(8)) | s.astype(np.uint64)
        letter = ((s >= 65) & (s <= 90)) | ((s >= 97) & (s <= 122)) | (s >= 128)
        folded = np.where((s >= 65) & (s <= 90), s + 32, s).astype(np.uint64)
        word = self.word[:a]
        self.word1 = np.where(~letter & (word != 0), word, self.word1[:a])
        self.word = np.where(letter, (word + folded + _U(1)) * _FNV, _U(0))
        nl = s == 10
        n = self.match.seen(a)                          # bytes seen, this one included
        line = self.line[:a]
        self.prev_line = np.where(nl, line, self.prev_line[:a])
        self.prev_len = np.where(nl, n - line, self.prev_len[:a])
        self.line = np.where(nl, n, line)
        blank = ((s == 32) | (s == 9)) & self.leading[:a]
        self.indent = np.where(nl, 0, np.where(blank, np.minimum(self.indent[:a] + 1, 63),
                                               self.indent[:a]))
        self.leading = nl | blank
