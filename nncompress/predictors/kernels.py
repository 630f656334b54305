"""Compiled per-step kernels of the non-neural stages (numba, ``@njit(cache=True)``).

Each stage's step is one or two calls here instead of hundreds of small numpy calls; the
numpy code in context.py, match.py, cm.py and mix.py stays as the reference that the tests
compare these kernels with, step by step. The kernels compute the same integers as that code:

- integer arithmetic only (int64, uint64 where the reference hashes in uint64; floor shifts and
  floor divisions, which numba gives Python's semantics), tables built by the reference modules;
- no parallel loops, so the thread count cannot matter;
- updates that the reference merges across streams keep its rules: every delta of a step is
  computed from the values before the step and the deltas of one entry are summed before the
  clip (``_group``); where a slot is shared, the highest stream index wins.

Compiled code is cached beside this file (numba's ``__pycache__``) or in NUMBA_CACHE_DIR, so
only the first run on a machine compiles (a few seconds per kernel).
"""
from __future__ import annotations

import ctypes
import mmap
import weakref

import math

import numpy as np
from numba import njit

_U8 = np.uint64(8)
_MASK56 = np.uint64((1 << 56) - 1)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_OFF_BITS = 40
_OFF_MASK = (1 << _OFF_BITS) - 1


_HUGE_MIN_BYTES = 8 << 20
# tracemalloc sees numpy's allocations in this domain; the mapped tables are reported there too,
# so that tests which measure allocations with tracemalloc still see them
_NUMPY_TRACE_DOMAIN = 389047
try:
    _trace_track = ctypes.pythonapi.PyTraceMalloc_Track
    _trace_track.argtypes = (ctypes.c_uint, ctypes.c_size_t, ctypes.c_size_t)
    _trace_untrack = ctypes.pythonapi.PyTraceMalloc_Untrack
    _trace_untrack.argtypes = (ctypes.c_uint, ctypes.c_size_t)
except AttributeError:
    _trace_track = _trace_untrack = None


def lazy_zeros(shape, dtype) -> np.ndarray:
    """A zero-filled array whose pages are mapped on first touch, like np.zeros; from 8 MiB on
    in an anonymous mapping marked for transparent huge pages (madvise MADV_HUGEPAGE, where the
    system has it), so that random rows of the large tables cost fewer TLB misses and page
    faults (measured: the cm stage at 256 streams about a third faster). Reported to tracemalloc
    as numpy reports np.zeros. Contents and results are the same either way."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < _HUGE_MIN_BYTES or advice is None:
        return np.zeros(shape, dtype=dtype)
    try:
        mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        mm.madvise(advice)
    except (OSError, ValueError, AttributeError):
        return np.zeros(shape, dtype=dtype)
    flat = np.frombuffer(mm, dtype=dtype)
    if _trace_track is not None:
        addr = flat.ctypes.data
        _trace_track(_NUMPY_TRACE_DOMAIN, addr, nbytes)
        weakref.finalize(flat, _trace_untrack, _NUMPY_TRACE_DOMAIN, addr)
    return flat.reshape(shape)


@njit(cache=True, inline="always")
def floordiv_r(a, b, rb):
    """floor(a / b) for int64 a, b > 0 with |a| < 2**62 and |a / b| < 2**40, given rb = 1.0 / b
    (computed once for many a): the float64 estimate is within 2**-11 of a / b, so its floor
    is off by at most one, and one integer correction each way makes it exact. A 64-bit
    integer division costs several times as much and does not vectorise."""
    q = np.int64(math.floor(np.float64(a) * rb))
    r = a - q * b
    if r < 0:
        q -= 1
    elif r >= b:
        q += 1
    return q


@njit(cache=True)
def _floor_log2(x):
    """floor(log2 x) for 1 <= x < 2**63 (bit length - 1), integers only."""
    n = 0
    if x >= (1 << 32):
        x >>= 32
        n += 32
    if x >= (1 << 16):
        x >>= 16
        n += 16
    if x >= (1 << 8):
        x >>= 8
        n += 8
    if x >= (1 << 4):
        x >>= 4
        n += 4
    if x >= (1 << 2):
        x >>= 2
        n += 2
    if x >= 2:
        n += 1
    return n


@njit(cache=True)
def _group(keys, m):
    """Distinct values among keys[:m] (non-negative), in order of first occurrence, and the group
    of every entry (an open-addressing hash table; the result does not depend on its layout)."""
    bits = 1
    while (1 << bits) < 2 * m:
        bits += 1
    mask = (1 << bits) - 1
    slot_key = np.full(1 << bits, -1, np.int64)
    slot_gid = np.empty(1 << bits, np.int64)
    gid = np.empty(m, np.int64)
    uniq = np.empty(m, np.int64)
    g = 0
    sh = np.uint64(64 - bits)
    for e in range(m):
        k = keys[e]
        h = np.int64((np.uint64(k) * _GOLD) >> sh)
        while True:
            sk = slot_key[h]
            if sk == k:
                gid[e] = slot_gid[h]
                break
            if sk == -1:
                slot_key[h] = k
                slot_gid[h] = g
                uniq[g] = k
                gid[e] = g
                g += 1
                break
            h = (h + 1) & mask
    return uniq[:g], gid


# --- ctx1 / ctx2 (context.ContextModel) ------------------------------------------------------

@njit(cache=True)
def ctx_coefficients(n, d, esc, a_out):
    """One stream's blend coefficients per count into a_out (K,), and the uniform share per byte
    (context.ContextModel._coefficients for one row)."""
    K = n.shape[0]
    R = np.int64(1) << 36
    for k in range(K - 1, -1, -1):
        nk = n[k]
        if nk:
            e = d[k] * esc[k]
            den = (nk << 3) + e
            a_out[k] = (R << 3) // den
            R = R * e // den
        else:
            a_out[k] = 0
    return R >> 8


@njit(cache=True)
def ctx_step(counts, n, d, hist, rows, s, masks, mults, shifts, offsets, esc, inc, limit, update):
    """ContextModel.step (update=True) or start (False) for the first len(s) streams: counts
    updated with s, histories advanced, each order's row found, (A, 256) weights returned."""
    A = s.shape[0]
    K = rows.shape[1]
    for i in range(A):
        if s[i] < 0 or s[i] > 255:
            raise ValueError("symbols must be bytes (0..255)")
    if update:
        for i in range(A):
            b = s[i]
            for k in range(K):
                r = rows[i, k]
                old = np.int64(counts[r, b])
                new = min(old + inc, 255)
                counts[r, b] = new
                n[r] += new - old
                if old == 0:
                    d[r] += 1
        # rows with a count past the limit are halved once each, after all the increments
        cand = np.empty(A * K, np.int64)
        nc = 0
        for i in range(A):
            for k in range(K):
                r = rows[i, k]
                if counts[r, s[i]] > limit:
                    cand[nc] = r
                    nc += 1
        if nc:
            cs = np.sort(cand[:nc])
            prev = -1
            for t in range(nc):
                r = cs[t]
                if r == prev:
                    continue
                prev = r
                tot = 0
                nz = 0
                for j in range(256):
                    c = (np.int64(counts[r, j]) + 1) >> 1
                    counts[r, j] = c
                    tot += c
                    if c:
                        nz += 1
                n[r] = tot
                d[r] = nz
        for i in range(A):
            hist[i] = ((hist[i] << _U8) | np.uint64(s[i])) & _MASK56
    for i in range(A):
        h = hist[i]
        for k in range(K):
            rows[i, k] = np.int64((((h & masks[k]) * mults[k]) >> shifts[k]) + offsets[k])
    W = np.empty((A, 256), np.int64)
    nr = np.empty(K, np.int64)
    dr = np.empty(K, np.int64)
    a = np.empty(K, np.int64)
    for i in range(A):
        for k in range(K):
            nr[k] = n[rows[i, k]]
            dr[k] = d[rows[i, k]]
        left = ctx_coefficients(nr, dr, esc, a)
        for j in range(256):
            W[i, j] = left
        for k in range(K):
            ak = a[k]
            if ak:
                r = rows[i, k]
                for j in range(256):
                    W[i, j] += ak * np.int64(counts[r, j])
    return W


# --- the match model (match.MatchModel) and its SSE stage (match.MatchStage) -----------------

@njit(cache=True)
def _match_update(buf, n, h, ptr, mlen, table, pred, s, hist_mask, shift, min_len, verify):
    """MatchModel.append then follow for the first len(s) streams (buf has room for one more
    byte per stream)."""
    A = s.shape[0]
    for i in range(A):
        buf[i, n[i]] = s[i]
        n[i] += 1
        h[i] = ((h[i] << _U8) | np.uint64(s[i])) & hist_mask
    # 1. matches that predicted right grow, the others end
    for i in range(A):
        ok = False
        nxt = ptr[i] + 1
        if mlen[i] > 0 and pred[i] == s[i]:
            if (nxt & _OFF_MASK) < n[nxt >> _OFF_BITS]:
                ok = True
        if ok:
            mlen[i] = min(mlen[i] + 1, 1 << 16)
            ptr[i] = nxt
        else:
            mlen[i] = 0
            ptr[i] = -1
    # 2. streams without a match look their context up (all lookups before any insert)
    for i in range(A):
        ni = n[i]
        if mlen[i] == 0 and ni >= min_len:
            cand = table[np.int64((h[i] * _GOLD) >> shift)]
            if cand >= 0:
                s2 = cand >> _OFF_BITS
                o2 = cand & _OFF_MASK
                if o2 < n[s2]:
                    length = 0
                    for k in range(1, verify + 1):
                        if o2 - k >= 0 and ni - k >= 0 and buf[s2, o2 - k] == buf[i, ni - k]:
                            length += 1
                        else:
                            break
                    if length >= min_len:
                        mlen[i] = length
                        ptr[i] = (s2 << _OFF_BITS) | o2
    # 3. insert this position for every ready stream; the highest stream wins a shared slot
    for i in range(A):
        if n[i] >= min_len:
            table[np.int64((h[i] * _GOLD) >> shift)] = (np.int64(i) << _OFF_BITS) | n[i]


@njit(cache=True)
def match_step(s, cell, q, qn, adapt, buf, n, h, ptr, mlen, table, pred, hist_mask, shift,
               min_len, verify):
    """MatchStage.step before its wrapped predictor: the SSE cells used at the last step learn
    the outcome, then the match model takes the bytes."""
    a = s.shape[0]
    used = 0
    delta = np.empty(a, np.int64)
    amax = adapt.shape[0] - 1
    for i in range(a):
        c = cell[i]
        if c >= 0:
            used += 1
            hit = (np.int64(1) << 16) if s[i] == pred[i] else np.int64(0)
            delta[i] = ((hit - q[c]) * adapt[min(qn[c], amax)]) >> 16
    if used:
        for i in range(a):
            c = cell[i]
            if c >= 0:
                q[c] += delta[i]
                qn[c] += 1
        for c in range(q.shape[0]):
            q[c] = min(max(q[c], 32), (1 << 16) - 32)
    _match_update(buf, n, h, ptr, mlen, table, pred, s, hist_mask, shift, min_len, verify)


@njit(cache=True)
def match_apply(w, buf, ptr, mlen, pred, cell, q, bucket_of, class_of):
    """MatchStage._apply: where a stream has a match, the predicted byte gets the SSE estimate q
    (Q22) and the other bytes share the rest in their proportions."""
    a = w.shape[0]
    out = w.copy()
    for i in range(a):
        cell[i] = -1
        if mlen[i] <= 0:
            continue
        code = ptr[i]
        b = np.int64(buf[code >> _OFF_BITS, code & _OFF_MASK])
        pred[i] = b
        total = 0
        for j in range(256):
            total += w[i, j]
        total = max(total, 1)
        pb = w[i, b]
        c = class_of[mlen[i]] * 128 + bucket_of[(pb << 16) // total]
        cell[i] = c
        qc = q[c]
        rest = max(total - pb, 1)
        f = ((1 << 16) - qc) << 6
        rr = 1.0 / np.float64(rest)
        for j in range(256):
            out[i, j] = 1 + floordiv_r(w[i, j] * f, rest, rr)
        out[i, b] = qc << 6
    return out


# --- the cm stage (cm.CMStage) ----------------------------------------------------------------

_H1 = np.uint64(0x9E3779B97F4A7C15)
_H2 = np.uint64(0xD6E8FEB86659FD93)
_H3 = np.uint64(0xA0761D6478BD642F)
_FNV = np.uint64(0x100000001B3)
_HALF = (1 << 15) << 8
_N_HASHED = 10
_N_CTX = 12
_N_INPUTS = 27
_ORDER_MASKS = np.array([0xFFFF, 0xFFFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFF], dtype=np.uint64)
_SPARSE_MASKS = np.array([0x00FF00FF00FF00FF, 0xFF00FF00FF00FF00], dtype=np.uint64)
_DEPTH = np.array([j.bit_length() - 1 for j in range(1, 256)], dtype=np.int64)
_LOCAL = np.array([j if j < 16 else (1 << (j.bit_length() - 5)) + (j & ((1 << (j.bit_length() - 5)) - 1))
                   for j in range(1, 256)], dtype=np.int64)


@njit(cache=True)
def _cm_row(hc, j, hb, ctx):
    """Row and check of slot j (0: high nibble, 1 + k: low nibble under high nibble k) of hashed
    context ctx whose hash is hc."""
    x = (hc + np.uint64(j) * _H3) * _H1
    x ^= x >> np.uint64(29)
    row = np.int64(x >> np.uint64(64 - hb)) + (np.int64(ctx) << hb)
    chk = np.int64((x >> _U8) & np.uint64(0x7FFF)) + 1
    return row, chk


@njit(cache=True)
def _count(T, idx, y, m, limit, rate_of):
    """cm.CMStage._count: each packed counter T[idx[e]] moves toward y[e]; the deltas of one
    counter are computed from its old value and summed, then clipped."""
    delta = np.empty(m, np.int64)
    for e in range(m):
        c = np.int64(T[idx[e]])
        delta[e] = (((y[e] << 16) - (c >> 8)) * rate_of[min(c & 255, limit)]) >> 16
    uniq, gid = _group(idx, m)
    g = uniq.shape[0]
    tot = np.zeros(g, np.int64)
    cnt = np.zeros(g, np.int64)
    for e in range(m):
        tot[gid[e]] += delta[e]
        cnt[gid[e]] += 1
    for u in range(g):
        c = np.int64(T[uniq[u]])
        p = min(max((c >> 8) + tot[u], 32), 65504)
        T[uniq[u]] = (p << 8) | min((c & 255) + cnt[u], 255)


@njit(cache=True)
def cm_predict(w, hist, word, word1, line, prev_line, prev_len, indent,
               mbuf, mn, mptr, mlen, mpred, H, Dt, apm, W1, W2, mq,
               p1, hn, hc, X, pm1, pm2, apm_cell, set1, set2, c1, mcls,
               K, hb, apm_mix, stretch, squash, class_of):
    """CMStage._predict for the a = len(w) first streams: the refined P(bit) at the selected
    nodes of each byte's tree (p1), everything its learning needs, and the (a, 256) leaves."""
    a = w.shape[0]
    out = np.empty((a, 256), np.int64)
    M = 15 + 15 * K
    L = mbuf.shape[1]
    T = np.empty(512, np.int64)
    Lv = np.empty(512, np.int64)
    rows = np.empty((_N_HASHED, K + 1), np.int64)
    valid = np.empty((_N_HASHED, K + 1), np.bool_)
    taken = np.empty(16, np.bool_)
    for i in range(a):
        # contexts
        h = hist[i]
        for k in range(4):
            hc[i, k] = ((h & _ORDER_MASKS[k]) + np.uint64(k + 1)) * _H1
        hc[i, 4] = (word[i] + np.uint64(77)) * _H3
        hc[i, 5] = (word[i] * np.uint64(31) + word1[i] + np.uint64(99)) * _H2
        for k in range(2):
            hc[i, 6 + k] = ((h & _SPARSE_MASKS[k]) + np.uint64(1234 + k)) * _H2
        col = mn[i] - line[i]
        above = np.uint64(0)
        if col < prev_len[i]:
            above = np.uint64(mbuf[i, min(prev_line[i] + col, L - 1)])
        hc[i, 8] = ((above << _U8) + (h & np.uint64(255)) + np.uint64(999)) * _H2
        hc[i, 9] = ((np.uint64(indent[i]) << np.uint64(16)) + (h & np.uint64(0xFFFF))
                    + np.uint64(4242)) * _H1
        cprev = np.int64(h & np.uint64(255))
        c1[i] = cprev
        # the wrapped predictor's P(bit = 1) at every node
        for j in range(256):
            T[256 + j] = w[i, j]
        for j in range(255, 0, -1):
            T[j] = T[2 * j] + T[2 * j + 1]
        for j in range(1, 256):
            p1[i, j - 1] = min(max((T[2 * j + 1] << 12) // max(T[j], 1), 1), 4095)
        # the K most likely high nibbles (ties: the lower one)
        for t in range(16):
            taken[t] = False
        for k in range(K):
            best = -1
            bv = np.int64(0)
            for t in range(16):
                if not taken[t] and (best < 0 or T[16 + t] > bv):
                    best = t
                    bv = T[16 + t]
            taken[best] = True
            hn[i, k] = best
        # the match model's byte; its high nibble replaces the K-th if missing
        mstate = 0
        pr = np.int64(0)
        qm = np.int64(0)
        mcls[i] = -1
        if mlen[i] > 0:
            code = mptr[i]
            pr = np.int64(mbuf[code >> _OFF_BITS, code & _OFF_MASK])
            mpred[i] = pr
            mh = pr >> 4
            present = False
            for k in range(K):
                if hn[i, k] == mh:
                    present = True
            if not present:
                hn[i, K - 1] = mh
            mcls[i] = class_of[mlen[i]]
            mstate = 1 if mlen[i] < 16 else 2
            qm = stretch[mq[mcls[i]] >> 4]
        s1 = mstate << 3
        if 97 <= cprev <= 122:
            s2 = 0
        elif 65 <= cprev <= 90:
            s2 = 1
        elif cprev == 32 or cprev == 10:
            s2 = 2
        else:
            s2 = 3
        s2 <<= 3
        set1[i] = s1
        set2[i] = s2
        # the rows of the selected slots
        for ctx in range(_N_HASHED):
            for sl in range(K + 1):
                j = 0 if sl == 0 else 1 + hn[i, sl - 1]
                row, chk = _cm_row(hc[i, ctx], j, hb, ctx)
                rows[ctx, sl] = row
                valid[ctx, sl] = H[row << 4] == chk
        # every refined node: inputs, the two mixers, the APM
        for m in range(M):
            if m < 15:
                node = m + 1
                sl = 0
                loc = node
                dep = _DEPTH[node - 1]
            else:
                kk = (m - 15) // 15
                l = (m - 15) % 15 + 1
                dl = _DEPTH[l - 1]
                node = (15 + hn[i, kk]) * (1 << dl) + l
                sl = 1 + kk
                loc = l
                dep = 4 + dl
            x = X[i, m]
            x[0] = stretch[p1[i, node - 1]]
            for ctx in range(_N_CTX):
                if ctx == 0:
                    c = np.int64(Dt[256 * 256 + node])
                elif ctx == 1:
                    c = np.int64(Dt[(cprev << 8) + node])
                elif valid[ctx - 2, sl]:
                    c = np.int64(H[(rows[ctx - 2, sl] << 4) + loc])
                else:
                    c = np.int64(0)
                nn = c & 255
                st = stretch[c >> 12] if nn > 0 else np.int64(0)
                x[1 + ctx] = st
                x[1 + _N_CTX + ctx] = (st * min(nn, 15)) >> 4
            xm = np.int64(0)
            if mstate > 0 and ((256 + pr) >> (8 - dep)) == node:
                xm = qm if (pr >> (7 - dep)) & 1 else -qm
            x[1 + 2 * _N_CTX] = xm
            x[_N_INPUTS - 1] = 256
            d1 = np.int64(0)
            d2 = np.int64(0)
            for t in range(_N_INPUTS):
                xv = np.int64(x[t])
                d1 += W1[s1 + dep, t] * xv
                d2 += W2[s2 + dep, t] * xv
            dot1 = min(max(d1 >> 16, -2047), 2047)
            dot2 = min(max(d2 >> 16, -2047), 2047)
            dot = (dot1 + dot2) >> 1
            pm = squash[dot + 2047]
            sv = dot + 2048
            lo = sv >> 7
            frac = sv & 127
            base = (cprev * 255 + node - 1) * 33
            pa = ((apm[base + lo] * (128 - frac) + apm[base + lo + 1] * frac) >> 7) >> 4
            p1[i, node - 1] = min(max((pm * (4 - apm_mix) + pa * apm_mix) >> 2, 1), 4095)
            pm1[i, m] = squash[dot1 + 2047]
            pm2[i, m] = squash[dot2 + 2047]
            apm_cell[i, m] = base + lo + (frac >> 6)
        # leaves: products of the P(bit) along each path
        Lv[1] = np.int64(1) << 36
        for j in range(1, 256):
            parent = Lv[j]
            one = (parent * p1[i, j - 1]) >> 12
            Lv[2 * j + 1] = one
            Lv[2 * j] = parent - one
        for j in range(256):
            out[i, j] = Lv[256 + j]
    return out


@njit(cache=True)
def cm_step(s, H, Dt, apm, W1, W2, mq, mqn, hn, hc, X, pm1, pm2, apm_cell, set1, set2, c1, mcls,
            mbuf, mn, mh, mptr, mlen, mtable, mpred, hist_mask, mshift, min_len, verify,
            hist, word, word1, line, prev_line, prev_len, indent, leading,
            K, hb, limit, lr, lr_shift, apm_rate, rate_of):
    """CMStage.step before its wrapped predictor (a = len(s) >= 1): every table learns the bytes
    s (CMStage._learn), the match model takes them, and each stream's history advances."""
    a = s.shape[0]
    # hashed contexts: each stream's two rows per context (high nibble, and the low nibble
    # under the coded high nibble); stale rows are taken over, the highest entry winning
    ne = a * _N_HASHED * 2
    rows = np.empty(ne, np.int64)
    chks = np.empty(ne, np.int64)
    orig = np.empty(ne, np.int64)
    for i in range(a):
        lo = 1 + (s[i] >> 4)
        for ctx in range(_N_HASHED):
            for sl in range(2):
                e = (i * _N_HASHED + ctx) * 2 + sl
                row, chk = _cm_row(hc[i, ctx], 0 if sl == 0 else lo, hb, ctx)
                rows[e] = row
                chks[e] = chk
                orig[e] = H[row << 4]
    for e in range(ne - 1, -1, -1):
        r16 = rows[e] << 4
        if orig[e] != chks[e] and H[r16] == orig[e]:
            for t in range(16):
                H[r16 + t] = _HALF
            H[r16] = chks[e]
    idx = np.empty(a * _N_HASHED * 8, np.int64)
    y = np.empty(a * _N_HASHED * 8, np.int64)
    m = 0
    for i in range(a):
        si = s[i]
        for ctx in range(_N_HASHED):
            e = (i * _N_HASHED + ctx) * 2
            ok0 = H[rows[e] << 4] == chks[e]
            ok1 = H[rows[e + 1] << 4] == chks[e + 1]
            for d in range(8):
                node = (256 + si) >> (8 - d)
                if (ok0 if d < 4 else ok1):
                    idx[m] = (rows[e if d < 4 else e + 1] << 4) + _LOCAL[node - 1]
                    y[m] = (si >> (7 - d)) & 1
                    m += 1
    _count(H, idx, y, m, limit, rate_of)
    # direct orders 0 and 1
    idx2 = np.empty(a * 16, np.int64)
    y2 = np.empty(a * 16, np.int64)
    m = 0
    for i in range(a):
        si = s[i]
        for d in range(8):
            node = (256 + si) >> (8 - d)
            bit = (si >> (7 - d)) & 1
            idx2[m] = 256 * 256 + node
            y2[m] = bit
            idx2[m + 1] = (c1[i] << 8) + node
            y2[m + 1] = bit
            m += 2
    _count(Dt, idx2, y2, m, limit, rate_of)
    # mixers and APM at the path's refined nodes (the high nibble's always, the low nibble's
    # when its high nibble was selected); every delta from the step's old values
    dW1 = np.zeros(W1.shape, np.int64)
    dW2 = np.zeros(W2.shape, np.int64)
    cells = np.empty(a * 8, np.int64)
    cdelta = np.empty(a * 8, np.int64)
    ma = 0
    for i in range(a):
        si = s[i]
        hs = si >> 4
        k = 0
        found = False
        for kk in range(K):
            if hn[i, kk] == hs:
                k = kk
                found = True
                break
        for d in range(8):
            if d >= 4 and not found:
                continue
            node = (256 + si) >> (8 - d)
            bit = (si >> (7 - d)) & 1
            pos = node - 1 if d < 4 else 15 + 15 * k + _LOCAL[node - 1] - 1
            err1 = ((bit << 12) - pm1[i, pos]) * lr
            err2 = ((bit << 12) - pm2[i, pos]) * lr
            r1 = set1[i] + d
            r2 = set2[i] + d
            for t in range(_N_INPUTS):
                xv = np.int64(X[i, pos, t])
                dW1[r1, t] += (xv * err1) >> lr_shift
                dW2[r2, t] += (xv * err2) >> lr_shift
            cell = apm_cell[i, pos]
            cells[ma] = cell
            cdelta[ma] = ((bit << 16) - apm[cell]) >> apm_rate
            ma += 1
    wl = 1 << 22
    for r in range(W1.shape[0]):
        for t in range(_N_INPUTS):
            W1[r, t] = min(max(W1[r, t] + dW1[r, t], -wl), wl)
    for r in range(W2.shape[0]):
        for t in range(_N_INPUTS):
            W2[r, t] = min(max(W2[r, t] + dW2[r, t], -wl), wl)
    uniq, gid = _group(cells, ma)
    tot = np.zeros(uniq.shape[0], np.int64)
    for e in range(ma):
        tot[gid[e]] += cdelta[e]
    for u in range(uniq.shape[0]):
        apm[uniq[u]] = min(max(apm[uniq[u]] + tot[u], 0), 65535)
    # the match model's hit rate by length class
    nq = mq.shape[0]
    qt = np.zeros(nq, np.int64)
    qc = np.zeros(nq, np.int64)
    for i in range(a):
        cls = mcls[i]
        if cls >= 0:
            hit = (np.int64(1) << 16) if mpred[i] == s[i] else np.int64(0)
            qt[cls] += ((hit - mq[cls]) * rate_of[min(mqn[cls], 255)]) >> 16
            qc[cls] += 1
    for cls in range(nq):
        if qc[cls]:
            mq[cls] = min(max(mq[cls] + qt[cls], 64), 65472)
            mqn[cls] += qc[cls]
    _match_update(mbuf, mn, mh, mptr, mlen, mtable, mpred, s, hist_mask, mshift, min_len, verify)
    # histories, words, lines, indentation
    for i in range(a):
        si = s[i]
        hist[i] = (hist[i] << _U8) | np.uint64(si)
        upper = 65 <= si <= 90
        letter = upper or (97 <= si <= 122) or si >= 128
        wd = word[i]
        if not letter and wd != 0:
            word1[i] = wd
        if letter:
            word[i] = (wd + np.uint64(si + 32 if upper else si) + np.uint64(1)) * _FNV
        else:
            word[i] = np.uint64(0)
        nl = si == 10
        if nl:
            prev_line[i] = line[i]
            prev_len[i] = mn[i] - line[i]
            line[i] = mn[i]
        blank = (si == 32 or si == 9) and leading[i]
        if nl:
            indent[i] = 0
        elif blank:
            indent[i] = min(indent[i] + 1, 63)
        leading[i] = nl or blank


# --- the ensemble mixers (mix.Mixture, mix.GeoMixture) --------------------------------------

@njit(cache=True)
def _isqrt(v):
    """Exact floor(sqrt(v)) for 0 <= v < 2**62 (as mix._isqrt)."""
    r = np.int64(np.floor(np.sqrt(np.float64(v))))
    if r * r > v:
        r -= 1
    if (r + 1) * (r + 1) <= v:
        r += 1
    return r


@njit(cache=True)
def mix_learn(s, alpha, bucket, P, share, temper, bucket_of):
    """Mixture.step before its members step: Bayes' rule on the members' probabilities of the
    bytes s (P: (M, >= a, 256), the last step's Q22 tables), fixed share, the next buckets."""
    a = s.shape[0]
    M = P.shape[0]
    post = np.empty(M, np.int64)
    floor_share = ((1 << 14) // M) >> share
    for i in range(a):
        b = bucket[i]
        tot = np.int64(0)
        for mm in range(M):
            like = P[mm, i, s[i]]
            if temper:
                like = _isqrt(like << 22)
            post[mm] = alpha[i, b, mm] * like
            tot += post[mm]
        tot = max(tot, 1)
        for mm in range(M):
            p = (post[mm] << 14) // tot
            p = p - (p >> share) + floor_share
            alpha[i, b, mm] = max(p, 1)
        bucket[i] = bucket_of[s[i]]


@njit(cache=True)
def _normalise_row(w, i, out, o):
    tot = np.int64(0)
    for j in range(256):
        tot += w[i, j]
    tot = max(tot, 1)
    rt = 1.0 / np.float64(tot)
    for j in range(256):
        out[o, j] = 1 + floordiv_r(w[i, j] * ((1 << 22) - 256), tot, rt)


@njit(cache=True)
def mix_predict(ws, alpha, bucket):
    """Mixture._mix after the members stepped: their Q22 tables (M, a, 256) and the linear
    mixture (a, 256) with each stream's weights for its bucket."""
    M = len(ws)
    a = ws[0].shape[0]
    P = np.empty((M, a, 256), np.int64)
    lin = np.zeros((a, 256), np.int64)
    for mm in range(M):
        w = ws[mm]
        Pm = P[mm]
        for i in range(a):
            _normalise_row(w, i, Pm, i)
            al = alpha[i, bucket[i], mm]
            for j in range(256):
                lin[i, j] += al * Pm[i, j]
    return P, lin


@njit(cache=True)
def _log2_q12(p, log2_tab):
    n = _floor_log2(p)
    m = p >> (n - 12) if n >= 12 else p << (12 - n)
    return ((n - 22) << 12) + log2_tab[m - 4096]


@njit(cache=True)
def geo_learn(s, L, q, c, w, lr_shift):
    """GeoMixture.step before the linear mixer learns: the geometric weights follow the gradient
    of the code length of the bytes s (L, q, c: the last step's logs, output and buckets)."""
    a = s.shape[0]
    K = L.shape[1]
    G = np.zeros(w.shape, np.int64)
    for i in range(a):
        qs = np.int64(0)
        for j in range(256):
            qs += q[i, j]
        for k in range(K):
            num = np.int64(0)
            for j in range(256):
                num += q[i, j] * np.int64(L[i, k, j])
            G[c[i], k] += np.int64(L[i, k, s[i]]) - num // qs
    shift = lr_shift - 4
    wl = 1 << 20
    for b in range(w.shape[0]):
        for k in range(K):
            g = G[b, k]
            g = (g + (1 << (shift - 1))) >> shift if shift > 0 else g << -shift
            w[b, k] = min(max(w[b, k] + g, -wl), wl)


@njit(cache=True)
def geo_predict(ws, alpha, bucket, w, log2_tab, exp2_tab):
    """GeoMixture._geo after the members stepped: their Q22 tables P, the logs L (a, M + 1, 256:
    the members' and the linear mixture's), the buckets c and the output q (a, 256)."""
    P, lin = mix_predict(ws, alpha, bucket)
    M = P.shape[0]
    a = lin.shape[0]
    K = M + 1
    L = np.empty((a, K, 256), np.int32)
    q = np.empty((a, 256), np.int64)
    c = np.empty(a, np.int64)
    nl = np.empty((1, 256), np.int64)
    sv = np.empty(256, np.int64)
    for i in range(a):
        for mm in range(M):
            for j in range(256):
                L[i, mm, j] = _log2_q12(P[mm, i, j], log2_tab)
        _normalise_row(lin, i, nl, 0)
        for j in range(256):
            L[i, M, j] = _log2_q12(nl[0, j], log2_tab)
        b = bucket[i]
        c[i] = b
        top = np.int64(-(1 << 62))
        for j in range(256):
            acc = np.int64(0)
            for k in range(K):
                acc += w[b, k] * np.int64(L[i, k, j])
            sv[j] = acc
            top = max(top, acc)
        for j in range(256):
            dd = (top - sv[j]) >> 16
            q[i, j] = exp2_tab[dd & 4095] >> min(dd >> 12, 63)
    return P, L, q, c
