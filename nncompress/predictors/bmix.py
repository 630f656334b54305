"""BMixStage: binary context mixing over any predictor, coding its own bits (stage ``bmix``).

The byte-level stages (cm, match) hand the engine 256 weights per byte, which the engine
quantises and range-codes; refining all 255 nodes of a byte's bit tree that way costs hundreds
of operations per byte. This stage instead codes each byte as 8 binary decisions (most
significant bit first) with its own binary arithmetic coder, like bcm (predictors/bcm.py), and
takes the wrapped predictor's byte distribution as one input of its mixer: at each bit, the
distribution summed over the two subtrees of the node gives P(bit = 1). Only the 8 nodes on the
coded byte's path are visited. Arithmetic tags ``bmix-v1`` and ``bmix-v2`` (new files; what
v2 adds is marked below): any change of what follows needs a new tag. Files of either decode;
one kernel runs both, given the tag's Shape (how many hashed contexts, direct counters, mixers).

The engine runs it in its lockstep loop (the wrapped predictor is stepped once per step for all
streams, as usual); each step is one compiled call (``_step``, numba) that codes the active
streams' bytes in stream order, all into one coder message per segment. Every table is shared by
the streams (each stream keeps its own context hashes, word, column and match); the processing
order is fixed (step by step, stream by stream), so encoder and decoder see the same tables.
Per bit:

- the wrapped predictor: stretch(P(bit = 1)) from its integer weights (exact cumulative sums,
  floor division to Q12);
- 14 context models (v2: 16), each a table of bit-history states (bcm's state machine, one byte per node)
  turned into probabilities by adaptive maps (bcm's StateMap): order 0 and order 1 (direct
  tables), and in hashed tables of 16-byte slots (a check byte and the 15 nodes of a nibble;
  two slots to a bucket, a new context taking over the one whose first node has seen less)
  orders 2, 3, 4, 5, 6 and 8, the current word with the previous one and with the previous byte
  (letters case-folded, bytes >= 128 counted as letters, so UTF-8 words of any alphabet count),
  two sparse contexts (bytes 2-3 back, bytes 3-5 back), the XML/HTML tag name being read or
  last read (whether inside its tag) with the previous byte, and the column (bytes since the
  last newline, up to 255) with the previous byte; v2: the current word alone, and the current
  word with the word before the previous one;
- v2: direct counters of orders 2 and 3 (hashed to 2**14 contexts, times the partial byte): a
  probability per node, moved toward each bit by 1 / (n + 1.5) as the adaptive maps are, so that
  low orders also have a nearly stationary estimate beside the bit histories;
- a match model: the last MATCH_MIN bytes of the stream are hashed into a shared table of
  positions; a candidate (in any stream) is verified backwards and predicts the byte that
  followed, with a strength learnt per match length. A position is used only once it has been
  coded (the ``known`` rule of the lockstep order), and the history is filled as bytes are coded,
  on both sides alike;
- logistic mixers (lpaq-style; weights Q16, error Q12), each choosing its weight set by the
  partial byte and: the match state; the wrapped predictor's confidence (16 classes of its
  stretched probability); the previous byte; v2: the classes (letter, digit, space, other) of
  the last three bytes; the current word's length (up to 15). A final mixer, its weight set
  chosen by the match state and the partial byte, combines their outputs (starting as their
  mean);
- two APMs (by order 1, by hashed order 2), averaged with the mixer: (2 p + 3 a1 + 3 a2) / 8;
- bcm's 32-bit binary arithmetic coder, 12-bit probabilities, one message per segment.

The mixer starts with weight 0.6 on the wrapped predictor and 0.1 on each other input. All
integer arithmetic (int64), so the bits are the same on every machine and thread count.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit

from ..errors import FormatError
from . import kernels, schema
from .base import Stage, stage_identity
from .bcm import (APM2_BITS, APM_INIT, MATCH_MIN, MATCH_VERIFY, NEXT, SM_INIT, STATES, _GOLD,
                  _M2, _M32, _MASKS, sm_next)
from .cm import SQUASH, STRETCH

ARITH_V1 = "bmix-v1"
ARITH_V2 = "bmix-v2"
# new files get the newest; files of every tag here decode
ARITH = ARITH_V2
ARITHS = (ARITH_V2, ARITH_V1)
SETTINGS = schema.Schema({
    "hash_bits": schema.integer(12, 24, 20),    # log2 slots (16 bytes) per hashed context
    "match_bits": schema.integer(12, 24, 22),   # log2 entries of the match model's table
    "limit": schema.integer(1, 1023, 1023),     # adaptive maps' counts stop here
    "lr": schema.integer(1, 64, 6),             # mixer learning rate, in units of 2**-14
    "apm_rate": schema.integer(2, 12, 6),
})


class Shape:
    """What an arithmetic tag's kernel holds: hashed contexts, direct counters, mixers; the
    mixer inputs are orders 0 and 1, the hashed contexts, the direct counters, the match
    model, the wrapped predictor and the bias, in this order."""

    def __init__(self, n_hashed: int, n_direct: int, n_mix: int) -> None:
        self.n_hashed, self.n_direct, self.n_mix = n_hashed, n_direct, n_mix
        self.i_match = 2 + n_hashed + n_direct
        self.i_inner = self.i_match + 1
        self.n_w = self.i_inner + 2
        # weight sets: by match state, by the wrapped predictor's confidence, by order 1,
        # then (bmix-v2) by the classes of the last 3 bytes and by the current word's length
        self.sets = [3 * 256, N_CONF * 256, 1 << 16] + [64 * 256, 16 * 256][:n_mix - 3]


N_CONF = 16                  # classes of the wrapped predictor's confidence (second mixer)
SHAPES = {ARITH_V1: Shape(12, 0, 3), ARITH_V2: Shape(14, 2, 5)}
MAX_HASHED = 14
MAX_W = 2 + MAX_HASHED + 2 + 3
DIRECT_BITS = 22             # entries per direct counter table (bmix-v2: orders 2 and 3, hashed)
MATCH_MAX = 65535
W_INIT = (1 << 16) // 10
W_INIT_INNER = (1 << 16) * 6 // 10
# the final mixer starts as the mean of the mixers (bmix-v1: 1/3 each)
FINAL_LR = 2
# V: each stream's scalars
_HIST, _WORD, _PWORD, _MPTR, _MLEN, _COL, _TAG, _TSTATE, _PPWORD, _WLEN = range(10)
_N_V = 10
# C: the coder's state
_X1, _X2, _X, _BP = range(4)
# A byte's code takes at most 32 bytes (4 per bit), the flush 4 more.
_BYTE_ROOM = 40
_U = np.uint64


@njit(cache=True, inline="always")
def _letter(b):
    """Whether byte b counts as a letter of a word: ASCII letters and every byte >= 128."""
    return b >= 128 or (b >= 97 and b <= 122) or (b >= 65 and b <= 90)


@njit(cache=True, inline="always")
def _byte_class(b):
    """0 letter (as _letter), 1 digit, 2 space or newline, 3 anything else."""
    if _letter(b):
        return 0
    if b >= 48 and b <= 57:
        return 1
    if b == 32 or b == 10:
        return 2
    return 3


@njit(cache=True, nogil=True)
def _step(decode, t, a, W, syms, hist, span, n, buf, C, V, nxt, sm, t0, t1, th, dt, wm, wf,
          apm1, apm2, mtab, squash_t, stretch_t, shape, hash_bits, match_bits, limit, lr,
          apm_rate):
    """Codes step t of the first a streams: the byte at offset t of each, given the wrapped
    predictor's weights W[k] for stream k. Encoding reads syms[k] and writes the code into buf;
    decoding reads buf and writes syms[k]. Either way the byte goes into hist (the frame's
    bytes at their positions, filled as they are coded). C holds the coder's state and the
    position in buf; the caller leaves room for _BYTE_ROOM bytes per stream. shape: the
    arithmetic's (hashed contexts, direct counters, mixers)."""
    n_hashed = shape[0]
    n_direct = shape[1]
    n_mix = shape[2]
    i_match = 2 + n_hashed + n_direct
    i_inner = i_match + 1
    n_w = i_inner + 2
    shift = np.uint64(64 - hash_bits)
    chk_shift = np.uint64(56 - hash_bits)
    mshift = np.uint64(64 - match_bits)
    dshift = np.uint64(64 - (DIRECT_BITS - 8))
    tsize = np.int64(16) << hash_bits
    x1 = C[_X1]
    x2 = C[_X2]
    x = C[_X]
    bp = C[_BP]
    nbuf = buf.shape[0]
    h = np.empty(MAX_HASHED, np.uint64)
    base = np.empty(MAX_HASHED, np.int64)
    st = np.empty(MAX_W, np.int64)
    xs = np.empty(MAX_W, np.int64)
    dix = np.empty(2, np.int64)
    sel = np.empty(5, np.int64)
    dots = np.empty(5, np.int64)
    cum = np.empty(257, np.int64)
    for s in range(a):
        pos = s * span + t
        c4 = np.uint64(V[s, _HIST])
        word = np.uint64(V[s, _WORD])
        pword = np.uint64(V[s, _PWORD])
        ppword = np.uint64(V[s, _PPWORD])
        wlen = V[s, _WLEN]
        mptr = V[s, _MPTR]
        mlen = V[s, _MLEN]
        col = V[s, _COL]
        tag = np.uint64(V[s, _TAG])
        tstate = V[s, _TSTATE]
        # the match model: a continued match only where its next byte is coded already
        if mlen > 0:
            o = mptr % span
            if not (mptr < n and (o < t or (o == t and mptr // span < s))):
                mlen = 0
        if t >= MATCH_MIN:
            hm = np.int64(((c4 & _MASKS[3]) * _GOLD) >> mshift)
            if mlen == 0:
                cand = mtab[_U(hm)]
                if cand > 0:
                    lo_c = (cand // span) * span
                    lo_p = s * span
                    ln = 0
                    while ln < MATCH_VERIFY and cand - 1 - ln >= lo_c and \
                            pos - 1 - ln >= lo_p and \
                            hist[_U(cand - 1 - ln)] == hist[_U(pos - 1 - ln)]:
                        ln += 1
                    if ln >= MATCH_MIN:
                        mlen = ln
                        mptr = cand
            mtab[_U(hm)] = pos
        cum[0] = 0
        for k in range(256):
            cum[k + 1] = cum[k] + W[s, k]
        c1 = np.int64(c4 & np.uint64(255))
        c2 = np.int64((c4 >> np.uint64(8)) & np.uint64(255))
        c3 = np.int64((c4 >> np.uint64(16)) & np.uint64(255))
        for k in range(4):
            h[k] = ((c4 & _MASKS[k]) + np.uint64(k + 1)) * _M2
        h[4] = (word * _M2 + pword) * _M2 + np.uint64(5)
        h[5] = ((c4 & np.uint64(0xFFFFFFFFFF)) + np.uint64(6)) * _M2
        h[6] = (c4 + np.uint64(7)) * _M2 * _GOLD + np.uint64(7)
        h[7] = (((c4 >> np.uint64(8)) & np.uint64(0xFFFF)) + np.uint64(8)) * _M2
        h[8] = (((c4 >> np.uint64(16)) & np.uint64(0xFFFFFF)) + np.uint64(9)) * _M2
        h[9] = (word * _M2 + np.uint64(c1)) * _M2 + np.uint64(10)
        h[10] = (tag * _M2 + np.uint64(tstate * 256 + c1) + np.uint64(11)) * _M2
        h[11] = (np.uint64(col if col < 255 else 255) * np.uint64(256) + np.uint64(c1)
                 + np.uint64(12)) * _M2 * _GOLD
        if n_hashed > 12:                 # bmix-v2: the word alone, the word with the one
            h[12] = (word + np.uint64(101)) * _M2           # before the previous
            h[13] = ((word * _M2 + ppword) * _M2 + np.uint64(102)) * _GOLD
        dctx2 = np.int64(((np.uint64(c1 | (c2 << 8)) + np.uint64(77)) * _GOLD) >> dshift) << 8
        dctx3 = (np.int64(((np.uint64(c1 | (c2 << 8) | (c3 << 16)) + np.uint64(78)) * _GOLD)
                          >> dshift) << 8) + (np.int64(1) << DIRECT_BITS)
        cls3 = (_byte_class(c1) + 4 * _byte_class(c2) + 16 * _byte_class(c3)) * 256
        wcls = (wlen if wlen < 15 else 15) * 256
        mbyte = np.int64(hist[_U(mptr)]) if mlen > 0 else -1
        mcls = 0
        if mlen > 0:
            mcls = 1 if mlen < 16 else 2
        a1ctx = c1 << 8
        a2ctx = np.int64(((np.uint64(c1 | (c2 << 8)) + np.uint64(1)) * _GOLD)
                         >> np.uint64(64 - APM2_BITS)) << 8
        c = syms[s] if not decode else np.int64(0)
        c0 = 1
        j = 1
        for bit in range(8):
            if bit == 0 or bit == 4:
                salt = np.uint64(0) if bit == 0 else np.uint64(c0) * _GOLD
                j = 1
                for k in range(n_hashed):
                    hx = (h[_U(k)] + salt) * _GOLD
                    bk = k * tsize + (np.int64(hx >> shift) << 4)
                    chk = np.uint8((hx >> chk_shift) & np.uint64(255))
                    if th[_U(bk)] != chk:
                        # two slots per bucket: the other one if it holds this context, else
                        # the one whose first node has seen less is emptied and taken over
                        b2 = bk ^ 16
                        if th[_U(b2)] == chk:
                            bk = b2
                        else:
                            if th[_U(b2 + 1)] < th[_U(bk + 1)]:
                                bk = b2
                            for jj in range(1, 16):
                                th[_U(bk + jj)] = 0
                            th[_U(bk)] = chk
                    base[_U(k)] = bk
            sv = np.int64(t0[_U(c0)])
            st[0] = sv
            xs[0] = stretch_t[_U(sm[_U(sv)] >> 20)]
            sv = np.int64(t1[_U(a1ctx | c0)]) + 256
            st[1] = sv
            xs[1] = stretch_t[_U(sm[_U(sv)] >> 20)]
            for k in range(n_hashed):
                sv = np.int64(th[_U(base[k] + j)]) + (k + 2) * 256
                st[_U(2 + k)] = sv
                xs[_U(2 + k)] = stretch_t[_U(sm[_U(sv)] >> 20)]
            if n_direct > 0:              # bmix-v2: direct counters of hashed orders 2 and 3
                dix[0] = dctx2 | c0
                dix[1] = dctx3 | c0
                for k in range(2):
                    xs[_U(2 + n_hashed + k)] = stretch_t[_U(np.int64(dt[_U(dix[k])]) >> 20)]
            expect = -1
            if mbyte >= 0:
                expect = (mbyte >> (7 - bit)) & 1
                ml = mlen if mlen < 15 else 15
                sv = 2 * ml + expect + i_match * 256
                st[_U(i_match)] = sv
                xs[_U(i_match)] = stretch_t[_U(sm[_U(sv)] >> 20)]
            else:
                xs[_U(i_match)] = 0
            # the wrapped predictor: P(bit = 1) at this node from its cumulative weights
            lo = (c0 - (1 << bit)) << (8 - bit)
            mid = lo + (1 << (7 - bit))
            hi = lo + (2 << (7 - bit))
            den = cum[_U(hi)] - cum[_U(lo)]
            pl = ((cum[_U(hi)] - cum[_U(mid)]) << 12) // den if den > 0 else 2048
            if pl < 1:
                pl = 1
            elif pl > 4095:
                pl = 4095
            xl = stretch_t[_U(pl)]
            xs[_U(i_inner)] = xl
            xs[_U(i_inner + 1)] = 256
            # the mixers (weight sets one after another in wm), then a mixer of their outputs
            sel[0] = mcls * 256 + c0
            sel[1] = 3 * 256 + ((xl + 2048) >> 8) * 256 + c0
            sel[2] = (3 + N_CONF) * 256 + c1 * 256 + c0
            sel[3] = (3 + N_CONF + 256) * 256 + cls3 + c0
            sel[4] = (3 + N_CONF + 256 + 64) * 256 + wcls + c0
            for m in range(n_mix):
                ws = sel[m] * n_w
                d = np.int64(0)
                for i in range(n_w):
                    d += xs[_U(i)] * wm[_U(ws + i)]
                dots[m] = min(2047, max(-2047, d >> 16))
            wfs = (mcls * 256 + c0) * (n_mix + 1)
            dotf = 256 * wf[_U(wfs + n_mix)]
            for m in range(n_mix):
                dotf += dots[m] * wf[_U(wfs + m)]
            dotf = min(2047, max(-2047, dotf >> 16))
            pm = squash_t[_U(dotf + 2047)]
            # APMs
            sp = stretch_t[_U(pm)] + 2048
            lo_a = sp >> 7
            wt = sp & 127
            b1 = (a1ctx | c0) * 33 + lo_a
            pa1 = (np.int64(apm1[_U(b1)]) * (128 - wt) + np.int64(apm1[_U(b1 + 1)]) * wt) >> 11
            b2 = (a2ctx | c0) * 33 + lo_a
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
                else:
                    buf[_U(bp)] = np.uint8(x2 >> 24)
                bp += 1
                x1 = (x1 << 8) & _M32
                x2 = ((x2 << 8) & _M32) | 255
            # learn
            err = ((y << 12) - pm) * FINAL_LR
            for m in range(n_mix):
                wf[_U(wfs + m)] += (dots[m] * err) >> 14
            wf[_U(wfs + n_mix)] += (256 * err) >> 14
            for m in range(n_mix):
                ws = sel[m] * n_w
                e = ((y << 12) - squash_t[_U(dots[m] + 2047)]) * lr
                for i in range(n_w):
                    wm[_U(ws + i)] += (xs[_U(i)] * e) >> 14
            for i in range(2 + n_hashed):
                si = st[_U(i)]
                sm[_U(si)] = sm_next(sm[_U(si)], y, limit)
            t0[_U(c0)] = nxt[st[0], y]
            t1[_U(a1ctx | c0)] = nxt[st[1] - 256, y]
            for k in range(n_hashed):
                th[_U(base[k] + j)] = nxt[st[2 + k] - (k + 2) * 256, y]
            if n_direct > 0:
                for k in range(2):
                    dt[_U(dix[k])] = np.uint32(sm_next(np.int64(dt[_U(dix[k])]), y, limit))
            if expect >= 0:
                si = st[_U(i_match)]
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
        syms[s] = b
        hist[_U(pos)] = b
        c4 = (c4 << np.uint64(8)) | np.uint64(b)
        if _letter(b):
            lower = b + 32 if (b >= 65 and b <= 90) else b
            word = (word + np.uint64(lower + 1)) * _GOLD
            wlen += 1
        else:
            wlen = 0
            if word != np.uint64(0):
                ppword = pword
                pword = word
                word = np.uint64(0)
        col = 0 if b == 10 else col + 1
        if b == 60:                               # '<': a tag name follows
            tag = np.uint64(0)
            tstate = 1
        elif tstate == 1:
            if (b >= 97 and b <= 122) or (b >= 65 and b <= 90) or (b >= 48 and b <= 58) or \
                    b == 47 or b == 45:
                tag = (tag + np.uint64(b + 1)) * _GOLD
            else:
                tstate = 2 if b != 62 else 0
        elif tstate == 2 and b == 62:
            tstate = 0
        if mlen > 0 and np.int64(hist[_U(mptr)]) == b:
            mlen = mlen + 1 if mlen < MATCH_MAX else mlen
            mptr += 1
        else:
            mlen = 0
        V[s, _HIST] = np.int64(c4)
        V[s, _WORD] = np.int64(word)
        V[s, _PWORD] = np.int64(pword)
        V[s, _PPWORD] = np.int64(ppword)
        V[s, _WLEN] = wlen
        V[s, _MPTR] = mptr
        V[s, _MLEN] = mlen
        V[s, _COL] = col
        V[s, _TAG] = np.int64(tag)
        V[s, _TSTATE] = tstate
    C[_X1] = x1
    C[_X2] = x2
    C[_X] = x
    C[_BP] = bp


class BMixStage(Stage):
    NAMES = ("bmix",)
    ARITH = ARITHS
    SETTINGS = SETTINGS
    CHILDREN = "inner"
    ARITH_REFUSED = "this file's {name} stage is not understood by this version of nncompress"
    # the engine steps the wrapped predictor and hands this stage each step's weights and bytes
    # (layout, begin_segment, encode_step / decode_step, end_segment) instead of coding weights
    CODES_BITS = True

    def __init__(self, inner, name: str = "bmix", arith: str = ARITH_V2, **settings) -> None:
        if arith not in ARITHS:
            raise ValueError(f"bmix arithmetic {arith!r} is not one of {ARITHS}")
        cfg = self.check_settings(name, settings)
        self.inner = inner
        self.cfg = cfg
        self.arith = arith
        self.shape = SHAPES[arith]
        self.identity = stage_identity(name, inner, {**cfg, "arith": arith})
        self._lengths: Optional[list] = None

    @classmethod
    def table_bytes(cls, settings: dict) -> int:
        sh = SHAPES[settings.get("arith", ARITH)]
        return (sh.n_hashed * (16 << settings["hash_bits"]) + 8 * (1 << settings["match_bits"])
                + 4 * 33 * ((1 << 16) + (1 << (APM2_BITS + 8)))
                + 4 * sh.n_direct * (1 << DIRECT_BITS)
                + 8 * sh.n_w * sum(sh.sets) + 8 * sh.i_inner * 256 + (1 << 16))

    # -- the engine's calls ------------------------------------------------------------------
    def layout(self, lengths: list) -> None:
        """The frame's stream lengths (the engine calls this before start)."""
        self._lengths = [int(x) for x in lengths]

    def start(self, n_streams: int) -> np.ndarray:
        if self._lengths is None or len(self._lengths) != n_streams:
            raise RuntimeError("layout(lengths) first, with one length per stream")
        cfg = self.cfg
        self.span = self._lengths[0]
        self.n = sum(self._lengths)
        sh = self.shape
        sm = np.zeros((sh.i_inner, 256), dtype=np.int64)
        sm[:, :STATES] = SM_INIT << 16          # probability in Q22, count 0
        sm[sh.i_match, :] = 1 << 31             # the match model's map: 1/2
        w = np.zeros(sh.n_w, dtype=np.int64)
        w[:sh.i_inner + 1] = W_INIT
        w[sh.i_inner] = W_INIT_INNER
        final = np.array([(1 << 16) // sh.n_mix] * sh.n_mix + [0], dtype=np.int64)
        self.t = dict(
            nxt=NEXT, sm=sm.reshape(-1),
            t0=np.zeros(256, dtype=np.uint8), t1=np.zeros(1 << 16, dtype=np.uint8),
            th=kernels.lazy_zeros(sh.n_hashed * (16 << cfg["hash_bits"]), np.uint8),
            # the direct counters: probability Q22 << 10 | count, as the adaptive maps; 1/2
            dt=np.full(sh.n_direct << DIRECT_BITS, 1 << 31, dtype=np.uint32),
            wm=np.tile(w, sum(sh.sets[:sh.n_mix])),
            wf=np.tile(final, 3 * 256),
            apm1=np.tile(APM_INIT.astype(np.int32), 1 << 16),
            apm2=np.tile(APM_INIT.astype(np.int32), 1 << (APM2_BITS + 8)),
            mtab=kernels.lazy_zeros(1 << cfg["match_bits"], np.int64))
        self.V = np.zeros((n_streams, _N_V), dtype=np.int64)
        self.hist = np.zeros(self.n, dtype=np.uint8)
        self.C = np.zeros(4, dtype=np.int64)
        self._syms = np.zeros(n_streams, dtype=np.int64)
        self.buf = None
        return self.inner.start(n_streams)

    def step(self, symbols: np.ndarray) -> np.ndarray:
        """Steps the wrapped predictor (the engine calls this after each coded step)."""
        return self.inner.step(symbols)

    def begin_segment(self, words: Optional[bytes] = None) -> None:
        """A fresh coder: for encoding (words None) or for decoding the segment's words."""
        self.C[:] = (0, _M32, 0, 0)
        self.decoding = words is not None
        if self.decoding:
            self.buf = np.frombuffer(words, dtype=np.uint8).copy()
            x = 0
            for i in range(4):
                x = (x << 8) | (int(self.buf[i]) if i < len(self.buf) else 0)
            self.C[_X], self.C[_BP] = x, 4
        else:
            self.buf = np.zeros(1 << 16, dtype=np.uint8)

    def _run(self, decode: bool, t: int, weights: np.ndarray) -> None:
        a = len(weights)
        if a > len(self._syms) or t >= self.span:
            raise ValueError(f"step {t} of {a} streams does not fit the layout")
        W = np.ascontiguousarray(weights, dtype=np.int64)
        cfg, tb = self.cfg, self.t
        sh = self.shape
        _step(decode, t, a, W, self._syms, self.hist, self.span, self.n, self.buf, self.C,
              self.V, tb["nxt"], tb["sm"], tb["t0"], tb["t1"], tb["th"], tb["dt"], tb["wm"],
              tb["wf"], tb["apm1"], tb["apm2"], tb["mtab"], SQUASH, STRETCH,
              (sh.n_hashed, sh.n_direct, sh.n_mix), cfg["hash_bits"], cfg["match_bits"],
              cfg["limit"], cfg["lr"], cfg["apm_rate"])

    def encode_step(self, t: int, symbols: np.ndarray, weights: np.ndarray) -> None:
        """Codes the bytes of step t (symbols[k] for stream k) given the wrapped predictor's
        weights for them."""
        a = len(weights)
        need = int(self.C[_BP]) + _BYTE_ROOM * a + 8
        if need > len(self.buf):
            grown = np.zeros(max(2 * len(self.buf), need), dtype=np.uint8)
            grown[:len(self.buf)] = self.buf
            self.buf = grown
        self._syms[:a] = symbols
        self._run(False, t, weights)

    def decode_step(self, t: int, weights: np.ndarray) -> np.ndarray:
        """Decodes and returns the bytes of step t, one per row of weights."""
        self._run(True, t, weights)
        if self.C[_BP] > len(self.buf) + 4:
            raise FormatError("corrupt .nnc data (a bmix segment ends early)")
        return self._syms[:len(weights)].copy()

    def end_segment(self) -> Optional[bytes]:
        """Encoding: the segment's words (the flushed message, padded to 4 bytes). Decoding:
        None, after checking that the message was not read past its end."""
        if self.decoding:
            if self.C[_BP] > len(self.buf) + 4:
                raise FormatError("corrupt .nnc data (a bmix segment ends early)")
            return None
        x1, bp, buf = int(self.C[_X1]), int(self.C[_BP]), self.buf
        for _ in range(4):
            buf[bp] = x1 >> 24
            bp += 1
            x1 = (x1 << 8) & _M32
        bp += (-bp) % 4
        return buf[:bp].tobytes()
