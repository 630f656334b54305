"""BCM: a fast binary context-mixing compressor that codes its own segments (level 1).

Every other predictor hands the engine 256 byte weights per step, which the engine quantises and
range-codes (format/coding.py); that costs at least a few hundred operations per byte in the
coder alone. BCM instead sees a byte as 8 binary decisions (most significant bit first) and codes
each with its own binary arithmetic coder inside one compiled loop (``_code``, numba) that runs a
whole segment: no Python per byte or per step. Compression and decompression run the same loop;
the only difference is whether a bit comes from the input or from the coder. Arithmetic tag
``bcm-v1``: any change of what follows needs a new tag.

One or two streams: each a contiguous part of the text in its natural order with a model of its
own, so two streams code on two threads (the kernel runs without the GIL) and give the same bits
on any number of threads. A model carries over from segment to segment; each segment holds one
arithmetic-coder message per stream (the container's segment records, with their CRCs; with two
streams the first message's byte length comes first). Per bit:

- 7 context models, each a table of bit-history states (one byte per node of the byte's bit
  tree): order 0 and order 1 (direct tables), orders 2, 3, 4 and 6 and a word context (the
  current word, letters case-folded, every byte >= 128 counted as a letter so that UTF-8 words of
  any alphabet count, hashed with the previous word) in hashed tables of 16-byte slots, one slot
  per (context, nibble): a check byte and the states of the nibble's 15 nodes. A slot whose check
  differs is emptied and taken over. A state stands for a pair of bit counts (n0, n1), at most
  STATES of them (``state_table``): on a bit its count grows and the other one, above 2, is
  halved toward 2, so states follow recent statistics. Each model turns its state into a
  probability with its own adaptive map (``StateMap``: probability per state, moved toward each
  outcome by 1 / (n + 1.5), n capped at ``limit``);
- a match model: the last MATCH_MIN bytes are hashed into a table of positions; where they
  occurred before (checked backwards), the byte that followed is predicted, with a strength
  learnt per match length (an adaptive map over (length class, predicted bit)), until it fails;
- a logistic mixer of the 8 stretched probabilities and a bias, its weight set chosen by the
  partial byte and whether a match is on (lpaq-style: p = squash(w . x / 2**16), w += x * err *
  lr / 2**14, err = bit - p in Q12);
- two APMs (33 interpolated cells over the stretched probability) by order 1 and by hashed order
  2, averaged with the mixer's output: p = (2 p_mix + 3 p_apm1 + 3 p_apm2) / 8;
- a 32-bit binary arithmetic coder (carry-less, as in paq) with 12-bit probabilities.

All integer arithmetic (int64), tables built from integers, so the bits are the same on every
machine. squash and stretch are the cm stage's (cm.SQUASH, cm.STRETCH).
"""
from __future__ import annotations

import struct
from typing import Optional

import numpy as np
from numba import njit

from ..errors import FormatError
from . import kernels, schema, threads
from .base import PredictorIdentity, Registered
from .cm import SQUASH, STRETCH

ARITH = "bcm-v1"
SETTINGS = schema.Schema({
    "hash_bits": schema.integer(12, 24, 20),    # log2 slots (16 bytes) per hashed context
    "match_bits": schema.integer(12, 24, 20),   # log2 entries of the match model's table
    "limit": schema.integer(1, 1023, 255),      # adaptive maps' counts stop here
    "lr": schema.integer(1, 64, 6),             # mixer learning rate, in units of 2**-14
    "apm_rate": schema.integer(2, 12, 7),
})
DEFAULT_SETTINGS = SETTINGS.defaults()

N_HASHED = 5                 # orders 2, 3, 4, 6 and the word context
N_INPUTS = 2 + N_HASHED + 1  # orders 0 and 1, the hashed ones, the match model
N_W = N_INPUTS + 1           # and the bias
MATCH_MIN = 6
MATCH_VERIFY = 32            # a candidate is checked this many bytes back at most
MATCH_MAX = 65535
APM2_BITS = 8               # hashed order-2 contexts of the second APM (times 256 partial bytes)
_MASKS = np.array([0xFFFF, 0xFFFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFF], dtype=np.uint64)

# Bit-history states: pairs (n0, n1) with max(n0, n1) <= _BOUND[min(n0, n1)].
_BOUND = (60, 24, 16, 10, 7, 5)


def _allowed(a: int, b: int) -> bool:
    lo, hi = min(a, b), max(a, b)
    return lo < len(_BOUND) and hi <= _BOUND[lo]


def state_table() -> tuple[np.ndarray, np.ndarray]:
    """The states' (n0, n1) pairs (STATES, 2), state 0 = (0, 0), and the transitions
    NEXT[state, bit] (STATES, 2), both int64."""
    pairs = [(0, 0)] + sorted({(a, b) for a in range(61) for b in range(61)
                               if _allowed(a, b) and (a, b) != (0, 0)},
                              key=lambda p: (p[0] + p[1], p[1]))
    index = {p: i for i, p in enumerate(pairs)}
    nxt = np.zeros((len(pairs), 2), dtype=np.int64)
    for i, (a, b) in enumerate(pairs):
        for y in (0, 1):
            n = [a, b]
            n[y] += 1
            if n[1 - y] > 2:
                n[1 - y] = (n[1 - y] + 2) // 2
            while not _allowed(*n):       # over the bounds: the larger count gives way
                n[0 if n[0] > n[1] else 1] -= 1
            nxt[i, y] = index[tuple(n)]
    return np.array(pairs, dtype=np.int64), nxt


PAIRS, NEXT = state_table()
STATES = len(PAIRS)
assert STATES <= 256
# Each adaptive map starts at the state's own estimate (n1 + 1/2) / (n0 + n1 + 1), in Q16.
SM_INIT = ((2 * PAIRS[:, 1] + 1) << 16) // (2 * (PAIRS[:, 0] + PAIRS[:, 1]) + 2)
RATE = np.array([(1 << 17) // (2 * n + 3) for n in range(1024)], dtype=np.int64)
APM_INIT = np.array([SQUASH[min(4094, max(0, (i - 16) * 128 + 2047))] * 16 for i in range(33)],
                    dtype=np.int64)

# V: the model's scalars between segments
_POS, _HIST, _WORD, _PWORD, _MPTR, _MLEN, _X1, _X2 = range(8)
_N_V = 8
# A byte's code takes at most 32 bytes (4 per bit when the coder's range has shrunk to nothing,
# which real text almost never does); the flush 4 more.
_BYTE_ROOM = 40
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xD6E8FEB86659FD93)
_M32 = (1 << 32) - 1
# Array indices in _code are cast to unsigned: numba then leaves out the negative-index
# wraparound of every access (the same results; about 9% faster).
_U = np.uint64


@njit(cache=True, inline="always")
def sm_next(tv, y, limit):
    """An adaptive map's cell after bit y: probability (Q22, above 10 count bits) moved toward y
    by 1 / (count + 1.5), the count grown up to limit. Scalars only, so inlining it costs the
    kernels nothing."""
    cn = tv & 1023
    pv = tv >> 10
    pv += (((y << 22) - pv) * RATE[_U(cn)]) >> 16
    return (pv << 10) | (cn + 1 if cn < limit else cn)


@njit(cache=True, nogil=True)
def _code(decode, hist, end, buf, bp, nxt, sm, t0, t1, th, w, apm1, apm2, mtab, v,
          squash_t, stretch_t, hash_bits, match_bits, limit, lr, apm_rate):
    """Codes hist[v[_POS] : end] into buf from buf[bp] on (decode=False), or decodes them
    from buf into hist (decode=True); returns the new bp. The encoder stops early, at a byte
    boundary, when buf might not hold the next byte's code (v[_POS] says where; the caller
    gives it a larger buf and calls again), and flushes the coder once it reaches end."""
    shift = np.uint64(64 - hash_bits)
    chk_shift = np.uint64(56 - hash_bits)
    mshift = np.uint64(64 - match_bits)
    tsize = np.int64(16) << hash_bits
    x1 = v[_X1]
    x2 = v[_X2]
    x = np.int64(0)
    nbuf = buf.shape[0]
    if decode:
        for i in range(4):
            x = (x << 8) | (np.int64(buf[_U(bp)]) if bp < nbuf else 0)
            bp += 1
    h = np.empty(N_HASHED, np.uint64)
    base = np.empty(N_HASHED, np.int64)
    st = np.empty(N_INPUTS, np.int64)
    xs = np.empty(N_W, np.int64)
    c4 = np.uint64(v[_HIST])
    word = np.uint64(v[_WORD])
    pword = np.uint64(v[_PWORD])
    mptr = v[_MPTR]
    mlen = v[_MLEN]
    pos = v[_POS]
    touch = np.int64(0)
    while pos < end:
        if not decode and bp + _BYTE_ROOM > nbuf:
            break
        c1 = np.int64(c4 & np.uint64(255))
        c2 = np.int64((c4 >> np.uint64(8)) & np.uint64(255))
        for k in range(4):
            h[_U(k)] = ((c4 & _MASKS[k]) + np.uint64(k + 1)) * _M2
        h[4] = (word * _M2 + pword) * _M2 + np.uint64(5)
        mbyte = np.int64(hist[_U(mptr)]) if mlen > 0 else -1
        mcls = 0
        if mlen > 0:
            mcls = 1 if mlen < 16 else 2
        a1ctx = c1 << 8
        a2ctx = np.int64(((np.uint64(c1 | (c2 << 8)) + np.uint64(1)) * _GOLD)
                         >> np.uint64(64 - APM2_BITS)) << 8
        t1ctx = c1 << 8
        c = np.int64(hist[_U(pos)]) if not decode else np.int64(0)
        c0 = 1
        for bit in range(8):
            if bit == 0 or bit == 4:
                # each nibble's slots (the high nibble's by context, the low one's by context
                # and high nibble): emptied and claimed when their check byte differs. (Helper
                # functions with array arguments would cost reference counting per call, so
                # the kernel is written out in one function.)
                salt = np.uint64(0) if bit == 0 else np.uint64(c0) * _GOLD
                j = 1
                for k in range(N_HASHED):
                    hx = (h[_U(k)] + salt) * _GOLD
                    bk = k * tsize + (np.int64(hx >> shift) << 4)
                    chk = np.uint8((hx >> chk_shift) & np.uint64(255))
                    if th[_U(bk)] != chk:
                        for jj in range(1, 16):
                            th[_U(bk + jj)] = 0
                        th[_U(bk)] = chk
                    base[_U(k)] = bk
            # touch the APM rows of this bit now, so that their cache lines load while the
            # inputs and the mixer are computed (the cells used depend on the mixer's output)
            r1 = (a1ctx | c0) * 33
            r2 = (a2ctx | c0) * 33
            touch += apm1[_U(r1)] + apm1[_U(r1 + 16)] + apm1[_U(r1 + 32)] \
                + apm2[_U(r2)] + apm2[_U(r2 + 16)] + apm2[_U(r2 + 32)]
            # inputs: each model's state, its map's probability, stretched
            s = np.int64(t0[_U(c0)])
            st[0] = s
            xs[0] = stretch_t[_U(sm[_U(s)] >> 20)]
            s = np.int64(t1[_U(t1ctx | c0)]) + 256
            st[1] = s
            xs[1] = stretch_t[_U(sm[_U(s)] >> 20)]
            for k in range(N_HASHED):
                s = np.int64(th[_U(base[k] + j)]) + (k + 2) * 256
                st[_U(2 + k)] = s
                xs[_U(2 + k)] = stretch_t[_U(sm[_U(s)] >> 20)]
            expect = -1
            if mbyte >= 0:
                expect = (mbyte >> (7 - bit)) & 1
                ml = mlen if mlen < 15 else 15
                s = 2 * ml + expect + (N_INPUTS - 1) * 256
                st[_U(N_INPUTS - 1)] = s
                xs[_U(N_INPUTS - 1)] = stretch_t[_U(sm[_U(s)] >> 20)]
            else:
                xs[_U(N_INPUTS - 1)] = 0
            xs[_U(N_W - 1)] = 256
            # mixer
            ws = (mcls * 256 + c0) * N_W
            dot = np.int64(0)
            for i in range(N_W):
                dot += xs[_U(i)] * w[_U(ws + i)]
            dot >>= 16
            if dot > 2047:
                dot = 2047
            elif dot < -2047:
                dot = -2047
            pm = squash_t[_U(dot + 2047)]
            # APMs
            sp = stretch_t[_U(pm)] + 2048
            lo = sp >> 7
            wt = sp & 127
            b1 = (a1ctx | c0) * 33 + lo
            pa1 = (np.int64(apm1[_U(b1)]) * (128 - wt) + np.int64(apm1[_U(b1 + 1)]) * wt) >> 11
            b2 = (a2ctx | c0) * 33 + lo
            pa2 = (np.int64(apm2[_U(b2)]) * (128 - wt) + np.int64(apm2[_U(b2 + 1)]) * wt) >> 11
            p = (2 * pm + 3 * pa1 + 3 * pa2) >> 3
            if p < 1:
                p = 1
            elif p > 4095:
                p = 4095
            # code the bit
            xmid = x1 + ((x2 - x1) >> 12) * p
            if decode:
                y = 1 if x <= xmid else 0
            else:
                y = (c >> (7 - bit)) & 1
            if y:
                x2 = xmid
            else:
                x1 = xmid + 1
            while ((x1 ^ x2) & 0xFF000000) == 0:
                if decode:
                    x = ((x << 8) & _M32) | (np.int64(buf[_U(bp)]) if bp < nbuf else 0)
                    bp += 1
                else:
                    buf[_U(bp)] = np.uint8(x2 >> 24)
                    bp += 1
                x1 = (x1 << 8) & _M32
                x2 = ((x2 << 8) & _M32) | 255
            # learn
            err = ((y << 12) - pm) * lr
            for i in range(N_W):
                w[_U(ws + i)] += (xs[_U(i)] * err) >> 14
            for i in range(N_INPUTS - 1):          # the adaptive maps: probability in Q22 << 10
                # | count, moved by 1 / (count + 1.5)
                si = st[_U(i)]
                sm[_U(si)] = sm_next(sm[_U(si)], y, limit)
            t0[_U(c0)] = nxt[st[0], y]
            t1[_U(t1ctx | c0)] = nxt[st[1] - 256, y]
            for k in range(N_HASHED):
                th[_U(base[k] + j)] = nxt[st[2 + k] - (k + 2) * 256, y]
            if expect >= 0:
                si = st[_U(N_INPUTS - 1)]
                sm[_U(si)] = sm_next(sm[_U(si)], y, limit)
                if expect != y:
                    mbyte = -1
            tw = 1 if wt >= 64 else 0
            apm1[_U(b1 + tw)] += ((y << 16) - apm1[_U(b1 + tw)]) >> apm_rate
            apm2[_U(b2 + tw)] += ((y << 16) - apm2[_U(b2 + tw)]) >> apm_rate
            c0 = (c0 << 1) | y
            j = (j << 1) | y
        # the byte is known
        b = c0 & 255
        if decode:
            hist[_U(pos)] = b
        ub = np.uint64(b)
        c4 = (c4 << np.uint64(8)) | ub
        if b >= 128 or (b >= 97 and b <= 122) or (b >= 65 and b <= 90):
            lower = b + 32 if (b >= 65 and b <= 90) else b
            word = (word + np.uint64(lower + 1)) * _GOLD
        elif word != np.uint64(0):
            pword = word
            word = np.uint64(0)
        # match model: grow or end, then look up, then insert this position
        if mlen > 0 and np.int64(hist[_U(mptr)]) == b:
            mlen = mlen + 1 if mlen < MATCH_MAX else mlen
            mptr += 1
        else:
            mlen = 0
        n = pos + 1
        if n >= MATCH_MIN:
            hm = np.int64(((c4 & _MASKS[3]) * _GOLD) >> mshift)
            if mlen == 0:
                cand = mtab[_U(hm)]
                if cand > 0:
                    ln = 0
                    while ln < MATCH_VERIFY and cand - 1 - ln >= 0 and \
                            hist[_U(cand - 1 - ln)] == hist[_U(n - 1 - ln)]:
                        ln += 1
                    if ln >= MATCH_MIN:
                        mlen = ln
                        mptr = cand
            mtab[_U(hm)] = n
        pos += 1
    if not decode and pos == end:   # flush: x1's 4 bytes decode the same whatever follows
        for i in range(4):
            buf[_U(bp)] = np.uint8(x1 >> 24)
            bp += 1
            x1 = (x1 << 8) & _M32
    if touch == -1:     # never (cells are not negative): keeps the touching loads
        pos = -1
    v[_POS] = pos
    v[_X1] = x1
    v[_X2] = x2
    v[_HIST] = np.int64(c4)
    v[_WORD] = np.int64(word)
    v[_PWORD] = np.int64(pword)
    v[_MPTR] = mptr
    v[_MLEN] = mlen
    return bp


def _first_room(n: int) -> int:
    """The encoder's first output buffer for n bytes (it grows when text codes to more)."""
    return n + (n >> 2) + 2 * _BYTE_ROOM


def _map(fn, jobs: list) -> list:
    """fn over jobs, on as many threads as there are jobs and threads.count() allows (the kernel
    runs without the GIL); each job touches only its own stream's arrays, so the results are
    the same on any number of threads."""
    n = max(1, threads.count())
    return [r for i in range(0, len(jobs), n) for r in threads.run(fn, jobs[i:i + n])]


class _Stream:
    """One stream's model and history, carried from segment to segment."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        sm = np.zeros((N_INPUTS, 256), dtype=np.int64)
        sm[:, :STATES] = SM_INIT << 16          # probability in Q22, count 0
        sm[N_INPUTS - 1, :] = 1 << 31           # the match model's map: 1/2
        w = np.zeros(3 * 256 * N_W, dtype=np.int64)
        w.reshape(-1, N_W)[:, :N_INPUTS] = (1 << 16) * 3 // 10
        self.tables = dict(
            nxt=NEXT, sm=sm.reshape(-1),
            t0=np.zeros(256, dtype=np.uint8), t1=np.zeros(1 << 16, dtype=np.uint8),
            th=kernels.lazy_zeros(N_HASHED * (16 << cfg["hash_bits"]), np.uint8), w=w,
            apm1=np.tile(APM_INIT.astype(np.int32), 1 << 16),
            apm2=np.tile(APM_INIT.astype(np.int32), 1 << (APM2_BITS + 8)),
            mtab=kernels.lazy_zeros(1 << cfg["match_bits"], np.int64),
            v=np.zeros(_N_V, dtype=np.int64))
        self.hist = np.zeros(0, dtype=np.uint8)

    def _run(self, decode: bool, end: int, buf: np.ndarray, bp: int) -> int:
        cfg, t = self.cfg, self.tables
        return _code(decode, self.hist, end, buf, bp, t["nxt"], t["sm"], t["t0"], t["t1"],
                     t["th"], t["w"], t["apm1"], t["apm2"], t["mtab"], t["v"], SQUASH, STRETCH,
                     cfg["hash_bits"], cfg["match_bits"], cfg["limit"], cfg["lr"],
                     cfg["apm_rate"])

    def _segment(self, n: int) -> tuple:
        """The model's position, the segment's end, with room for it in the history, and a
        fresh coder."""
        v = self.tables["v"]
        pos = int(v[_POS])
        if pos + n + 1 > len(self.hist):
            grown = np.zeros(max(2 * len(self.hist), pos + n + 1), dtype=np.uint8)
            grown[:pos] = self.hist[:pos]
            self.hist = grown
        v[_X1], v[_X2] = 0, _M32
        return pos, pos + n

    def encode(self, data: np.ndarray) -> bytes:
        pos, end = self._segment(len(data))
        self.hist[pos:end] = data
        buf = np.zeros(_first_room(len(data)), dtype=np.uint8)
        bp = self._run(False, end, buf, 0)
        while self.tables["v"][_POS] < end:       # more than 1.25 bytes per byte so far
            grown = np.zeros(2 * len(buf), dtype=np.uint8)
            grown[:bp] = buf[:bp]
            buf = grown
            bp = self._run(False, end, buf, bp)
        return buf[:bp + (-bp) % 4].tobytes()

    def decode(self, words: bytes, n: int) -> np.ndarray:
        pos, end = self._segment(n)
        buf = np.frombuffer(words, dtype=np.uint8).copy()   # writable, as the kernel's type
        read = self._run(True, end, buf, 0)
        if read > len(buf) + 4:
            raise FormatError("corrupt .nnc data (a bcm segment ends early)")
        return self.hist[pos:end].copy()


class BCM(Registered):
    NAMES = ("bcm",)
    ARITH = ARITH
    SETTINGS = SETTINGS
    # Each stream is a contiguous part of the text with its own model, coded on its own thread:
    # inputs of 2 MiB and more get two streams (twice the speed on two cores for about 3% more
    # output), smaller ones one. Level 2 keeps one stream whatever the size.
    MIN_STREAM_LEN = 1 << 20
    MAX_STREAMS = 2
    STREAM_CAP = 2
    # the engine hands this predictor whole segments (code_segment) instead of stepping it
    CODES_SEGMENTS = True

    def __init__(self, **settings) -> None:
        cfg = self.check_settings("bcm", settings)
        self.settings = cfg
        self.identity = PredictorIdentity(name="bcm", settings={"arith": ARITH, **cfg})
        self._streams: Optional[list[_Stream]] = None

    @classmethod
    def table_bytes(cls, settings: dict) -> int:
        """The tables of STREAM_CAP streams (each stream has its own)."""
        return cls.STREAM_CAP * (
            N_HASHED * (16 << settings["hash_bits"]) + 8 * (1 << settings["match_bits"])
            + 4 * 33 * ((1 << 16) + (1 << (APM2_BITS + 8))) + 8 * (N_W * 3 * 256))

    @classmethod
    def from_identity(cls, name, settings, children, source):
        return cls(**settings)

    def start(self, n_streams: int) -> None:
        if not 1 <= n_streams <= self.STREAM_CAP:
            raise ValueError(f"bcm codes 1 to {self.STREAM_CAP} streams, not {n_streams}")
        self._streams = [_Stream(self.settings) for _ in range(n_streams)]

    def _active(self, k: int) -> list[_Stream]:
        if self._streams is None:
            raise RuntimeError("start() first")
        if not 1 <= k <= len(self._streams):
            raise ValueError(f"a segment of {k} streams for a model of {len(self._streams)}")
        return self._streams[:k]

    def encode_segment(self, rows) -> bytes:
        """The next bytes of the first len(rows) streams (one uint8 array each), coded: the
        segment's words (a multiple of 4 bytes). One stream's words are its coder's message;
        with k > 1 streams, k - 1 little-endian uint32 byte lengths of the first k - 1
        messages come first, then the k messages."""
        msgs = _map(_Stream.encode, list(zip(self._active(len(rows)), rows)))
        if len(msgs) == 1:
            return msgs[0]
        return struct.pack(f"<{len(msgs) - 1}I", *map(len, msgs[:-1])) + b"".join(msgs)

    def decode_segment(self, words: bytes, counts) -> list[np.ndarray]:
        """The next counts[s] bytes of the first len(counts) streams, decoded from a segment's
        words."""
        streams = self._active(len(counts))
        k = len(counts)
        head = 4 * (k - 1)
        if len(words) < head:
            raise FormatError("corrupt .nnc data (a bcm segment ends early)")
        sizes = list(struct.unpack(f"<{k - 1}I", words[:head]))
        if any(n % 4 for n in sizes) or head + sum(sizes) > len(words):
            raise FormatError("corrupt .nnc data (a bcm segment's stream lengths do not fit)")
        cuts = np.cumsum([head] + sizes).tolist() + [len(words)]
        msgs = [words[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        return _map(_Stream.decode, list(zip(streams, msgs, counts)))

    def step(self, symbols):
        raise TypeError("bcm codes whole segments (encode_segment, decode_segment), not steps")
