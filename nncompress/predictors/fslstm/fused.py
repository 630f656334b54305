"""Compiled elementwise parts of the exact FS-LSTM step (numba): the same integers as exact.py.

`exact.ExactFSRNN` on the numpy backend spends most of a step in elementwise int64 work over
(streams x 4n) arrays: LayerNorm's mean, variance, integer square root and floor division, the
clamps, the table lookups and the cell update, each a separate numpy pass with its temporaries.
`cell` does all of one cell's work after its matrix product in one pass over the streams, and
`softmax_weights` the output layer's table lookup. The matrix products stay in exact.py.

Same integers: every operation is the one exact.py writes, in int64 (numba's `//` and `>>` on
signed integers floor as numpy's do; the integer square root is corrected to the exact one as
in exact.py), with no parallel loops and no fastmath. `tests/test_fslstm_fused.py` steps both
side by side, extreme values included. `exact.ExactFSRNN.use_kernels = False` selects the
reference.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels import floordiv_r
from . import exact

_FRAC = exact.FRAC
_ACT = exact.ACT
_LUT_OUT = exact.LUT_OUT
_LUT_SHIFT = exact.LUT_SHIFT
_LUT_HALF = exact.LUT_HALF
_EXP_ENTRIES = exact.EXP_ENTRIES
_Z = exact.Z_CLAMP
_C = exact.C_CLAMP


@njit(cache=True, inline="always")
def _isqrt(v):
    r = np.int64(math.sqrt(np.float64(v)))
    while r * r > v:
        r -= 1
    while (r + 1) * (r + 1) <= v:
        r += 1
    return r


@njit(cache=True, inline="always")
def _clip(x, lim):
    if x < -lim:
        return -lim
    if x > lim:
        return lim
    return x


@njit(cache=True, inline="always")
def _lut_index(x):
    i = x >> _LUT_SHIFT
    if i < -_LUT_HALF:
        i = -_LUT_HALF
    elif i > _LUT_HALF - 1:
        i = _LUT_HALF - 1
    return i + _LUT_HALF


@njit(cache=True, inline="always")
def _ln_row(src, base, n, eps, y, ybase):
    """exact._ln_y of src[base:base+n] (clamped to |z| <= Z_CLAMP) into y[ybase:ybase+n];
    returns the standard deviation (Q16)."""
    # One pass for both sums: sum((v - mean)**2) = sum(v**2) - 2 mean sum(v) + n mean**2, the
    # same integer (|v| <= 2**23, so every term stays below 2**57 for n <= 1024); the clipped
    # values wait in y (src and y are never the same array).
    tot = np.int64(0)
    sq = np.int64(0)
    for j in range(n):
        v = _clip(src[base + j], _Z)
        y[ybase + j] = v
        tot += v
        sq += v * v
    mean = tot // n
    ss = sq - 2 * mean * tot + n * mean * mean
    sd = _isqrt(ss // n + eps)
    rsd = 1.0 / np.float64(sd)
    for j in range(n):
        y[ybase + j] = floordiv_r((y[ybase + j] - mean) << _FRAC, sd, rsd)
    return sd


@njit(cache=True, inline="always")
def _cell_row(zs, s, h, cs, ln_gain, ln_bias, lnc_gain, lnc_bias, lut_sig, lut_tanh, fb, eps,
              kh, kc, h_out, c_out, y4, sd4, sf, si, tj, yc, sdc, tl, so, record,
              yrow, crow, ycrow):
    """cell's work on stream s, its pre-activations zs (4n,)."""
    n = h.shape[1]
    for g in range(4):
        sdg = _ln_row(zs, g * n, n, eps, yrow, g * n)
        if record:
            sd4[s, g] = sdg
    if record:
        for j in range(n):
            for g in range(4):
                y4[s, g, j] = yrow[g * n + j]
    for j in range(n):
        gi = ((yrow[j] * ln_gain[j]) >> _FRAC) + ln_bias[j]
        gj = ((yrow[n + j] * ln_gain[n + j]) >> _FRAC) + ln_bias[n + j]
        gf = ((yrow[2 * n + j] * ln_gain[2 * n + j]) >> _FRAC) + ln_bias[2 * n + j]
        vf = lut_sig[_lut_index(gf + fb)]
        vi = lut_sig[_lut_index(gi)]
        vj = lut_tanh[_lut_index(gj)]
        c = ((cs[s, j] * vf) >> _LUT_OUT) + ((vi * vj) >> (2 * _LUT_OUT - _FRAC))
        c = _clip(c, _C)
        crow[j] = c
        if record:
            sf[s, j] = vf
            si[s, j] = vi
            tj[s, j] = vj
    sdcs = _ln_row(crow, 0, n, eps, ycrow, 0)
    if record:
        sdc[s] = sdcs
    for j in range(n):
        go = ((yrow[3 * n + j] * ln_gain[3 * n + j]) >> _FRAC) + ln_bias[3 * n + j]
        lc = ((ycrow[j] * lnc_gain[j]) >> _FRAC) + lnc_bias[j]
        vt = lut_tanh[_lut_index(lc)]
        vo = lut_sig[_lut_index(go)]
        hn = (vt * vo) >> (2 * _LUT_OUT - _ACT)
        h_out[s, j] = (kh * h[s, j] + ((1 << 15) - kh) * hn) >> 15
        c_out[s, j] = (kc * cs[s, j] + ((1 << 15) - kc) * crow[j]) >> 15
        if record:
            yc[s, j] = ycrow[j]
            tl[s, j] = vt
            so[s, j] = vo


@njit(cache=True, nogil=True)
def cell(z, h, cs, ln_gain, ln_bias, lnc_gain, lnc_bias, lut_sig, lut_tanh, fb, eps, kh, kc,
         h_out, c_out, y4, sd4, sf, si, tj, yc, sdc, tl, so, record=True):
    """One cell after its product (exact.ExactFSRNN._cell): z (S, 4n) Q16 pre-activations with
    the input part added, h (S, n) Q14, cs (S, n) Q16. Writes h_out, c_out and, when `record`,
    the tape (y4 (S, 4, n), sd4 (S, 4), sf, si, tj, yc, tl, so (S, n), sdc (S,); without it
    they may be arrays of any size, left as they are)."""
    S, n = h.shape
    yrow = np.empty(4 * n, dtype=np.int64)
    crow = np.empty(n, dtype=np.int64)
    ycrow = np.empty(n, dtype=np.int64)
    for s in range(S):
        _cell_row(z[s], s, h, cs, ln_gain, ln_bias, lnc_gain, lnc_bias, lut_sig, lut_tanh, fb,
                  eps, kh, kc, h_out, c_out, y4, sd4, sf, si, tj, yc, sdc, tl, so, record,
                  yrow, crow, ycrow)


@njit(cache=True, nogil=True)
def cell_i8(acc, m, r, add, idx, h, cs, ln_gain, ln_bias, lnc_gain, lnc_bias, lut_sig, lut_tanh,
            fb, eps, kh, kc, h_out, c_out, y4, sd4, sf, si, tj, yc, sdc, tl, so, record=True):
    """cell with its product's rescaling fused in (exact-i8-v1): z[s] = ((acc[s] * m) >> r) +
    add[idx[s]] (acc (S, 4n) int32 sums; add a per-byte table indexed by symbols, the (S, 4n)
    input part with idx = 0..S-1, or a (1, 4n) bias with idx = 0)."""
    S, n = h.shape
    zrow = np.empty(4 * n, dtype=np.int64)
    yrow = np.empty(4 * n, dtype=np.int64)
    crow = np.empty(n, dtype=np.int64)
    ycrow = np.empty(n, dtype=np.int64)
    for s in range(S):
        ad = add[idx[s]]
        for j in range(4 * n):
            zrow[j] = ((np.int64(acc[s, j]) * m[j]) >> r) + ad[j]
        _cell_row(zrow, s, h, cs, ln_gain, ln_bias, lnc_gain, lnc_bias, lut_sig, lut_tanh, fb,
                  eps, kh, kc, h_out, c_out, y4, sd4, sf, si, tj, yc, sdc, tl, so, record,
                  yrow, crow, ycrow)


# ------------------------------------------------------------------ cell_i8 in float64 (the same integers)
#
# cell_i8 does its work in int64, which AVX2 cannot vectorise (no packed 64-bit multiply, shift or
# float conversion). cell_i8f computes the same integers as integer-valued float64s: every value
# below is an integer with |v| < 2**53, so each product, sum and multiplication by a power of two
# is exact, floor() is exact, and floor division is a float estimate corrected to the exact
# quotient (_fdiv). The ranges that make it so are checked once per model (exact.py,
# _float_cell_ok); where they do not hold, cell_i8 runs. Two identities fold steps:
# floor((floor(y g / 2**16) + b) / 2**6) = floor((y g + b 2**16) / 2**22) for integers b (the
# LUT index of a LayerNorm output, so bias_hi holds b 2**16, the forget bias added), and the
# sigmoid and tanh tables sit in one int32 array (tanh from LUT_HALF * 2 on).

_FH = float(_LUT_HALF)
_I22 = 1.0 / (1 << (_FRAC + _LUT_SHIFT))
_I16 = 1.0 / (1 << _FRAC)
_I15 = 1.0 / (1 << _LUT_OUT)
_I14 = 1.0 / (1 << (2 * _LUT_OUT - _FRAC))
_IH = 1.0 / (1 << (2 * _LUT_OUT - _ACT))
_FZ = float(_Z)
_FC = float(_C)


@njit(cache=True, inline="always")
def _fdiv(a, b, rb):
    """floor(a / b) of integer-valued float64s, |a| < 2**50, 0 < b < 2**50 and rb = 1 / b: the
    estimate is off by at most one, and q * b and a - q * b are exact."""
    q = np.floor(a * rb)
    r = a - q * b
    q = q - 1.0 if r < 0.0 else q
    q = q + 1.0 if r >= b else q
    return q


@njit(cache=True, inline="always")
def _istats(v, base, n, eps):
    """exact._ln_y's mean and standard deviation of the int32 values v[base:base+n]."""
    tot = np.int64(0)
    sq = np.int64(0)
    for j in range(base, base + n):
        x = np.int64(v[j])
        tot += x
        sq += x * x
    mean = tot // n
    sd = _isqrt((sq - 2 * mean * tot + n * mean * mean) // n + eps)
    return np.float64(mean), np.float64(sd)


@njit(cache=True, inline="always")
def _fidx(y, g, b_hi, lo):
    """The LUT index (lo added) of LayerNorm output y with gain g and bias b_hi = bias 2**16."""
    i = np.floor((y * g + b_hi) * _I22)
    return np.int32(min(max(i, -_FH), _FH - 1.0) + lo)


@njit(cache=True, nogil=True)
def cell_i8f(acc, mf, rs, add, idx, h, cs, gain, bias_hi, lnc_gain, lncb_hi, lut, eps, kh, kc,
             h_out, c_out):
    """cell_i8 without the tape: acc (S, 4n) exact integer sums (int32 or float), mf (4n,) the
    column multipliers and rs = 2**-r as float64, add (rows, 4n) float64 indexed by idx,
    gain (4n,), bias_hi (4n,) = (ln_bias + the forget bias on gate f) 2**16, lnc_gain (n,),
    lncb_hi (n,) = lnc_bias 2**16 as float64, lut: sigmoid then tanh table (int32)."""
    S, n = h.shape
    n4 = 4 * n
    zi = np.empty(n4, dtype=np.int32)
    ix = np.empty(n4, dtype=np.int32)
    gv = np.empty(n4, dtype=np.float64)
    ci = np.empty(n, dtype=np.int32)
    ix2 = np.empty(n, dtype=np.int32)
    vt = np.empty(n, dtype=np.float64)
    khf = np.float64(kh)
    khc = np.float64((1 << 15) - kh)
    kcf = np.float64(kc)
    kcc = np.float64((1 << 15) - kc)
    for s in range(S):
        a = acc[s]
        ad = add[idx[s]]
        for j in range(n4):
            z = np.floor(np.float64(a[j]) * mf[j] * rs) + ad[j]
            zi[j] = np.int32(min(max(z, -_FZ), _FZ))
        for g in range(4):
            mean, sd = _istats(zi, g * n, n, eps)
            rsd = 1.0 / sd
            lo = _FH + (2.0 * _FH if g == 1 else 0.0)     # gate j is a tanh
            for j in range(g * n, (g + 1) * n):
                y = _fdiv((np.float64(zi[j]) - mean) * 65536.0, sd, rsd)
                ix[j] = _fidx(y, gain[j], bias_hi[j], lo)
        for j in range(n4):
            gv[j] = np.float64(lut[np.uint64(ix[j])])
        c_row = cs[s]
        for j in range(n):      # gates: i = gv[j], j = gv[n + j], f = gv[2n + j], o = gv[3n + j]
            c = np.floor(np.float64(np.int32(c_row[j])) * gv[2 * n + j] * _I15) \
                + np.floor(gv[j] * gv[n + j] * _I14)
            ci[j] = np.int32(min(max(c, -_FC), _FC))
        mean, sd = _istats(ci, 0, n, eps)
        rsd = 1.0 / sd
        for j in range(n):
            y = _fdiv((np.float64(ci[j]) - mean) * 65536.0, sd, rsd)
            ix2[j] = _fidx(y, lnc_gain[j], lncb_hi[j], 3.0 * _FH)
        for j in range(n):
            vt[j] = np.float64(lut[np.uint64(ix2[j])])
        h_row = h[s]
        ho = h_out[s]
        for j in range(n):
            hn = np.floor(vt[j] * gv[3 * n + j] * _IH)
            ho[j] = np.int64(np.int32(np.floor(
                (khf * np.float64(np.int32(h_row[j])) + khc * hn) * (1.0 / 32768.0))))
        co = c_out[s]
        for j in range(n):
            co[j] = np.int64(np.int32(np.floor(
                (kcf * np.float64(np.int32(c_row[j])) + kcc * np.float64(ci[j]))
                * (1.0 / 32768.0))))


@njit(cache=True, nogil=True)
def i8_rescale_bias_f(acc, mf, rs, bias, out):
    """i8_rescale_bias into float64: floor(acc * m / 2**r) + bias (mf, bias float64)."""
    S, N = acc.shape
    for s in range(S):
        a = acc[s]
        o = out[s]
        for j in range(N):
            o[j] = np.floor(np.float64(a[j]) * mf[j] * rs) + bias[j]


@njit(cache=True, nogil=True)
def softmax_weights(logits, lut_exp, out):
    """exact.ExactFSRNN._weights after the product: lut_exp[clamp((max - logit) >> 6)]."""
    S, V = logits.shape
    for s in range(S):
        m = logits[s, 0]
        for v in range(1, V):
            if logits[s, v] > m:
                m = logits[s, v]
        for v in range(V):
            i = (m - logits[s, v]) >> _LUT_SHIFT
            if i > _EXP_ENTRIES - 1:
                i = _EXP_ENTRIES - 1
            out[s, v] = lut_exp[i]


# ------------------------------------------------------------------ int8 products (exact-i8-v1)

_Q7 = exact.Q7_SHIFT
_I8 = exact.I8_MAX


@njit(cache=True, nogil=True)
def q7(a, out):
    """exact.to_q7 into an int8 array: clamp((a + 64) >> 7, -127, 127)."""
    S, K = a.shape
    for s in range(S):
        for k in range(K):
            v = (a[s, k] + (1 << (_Q7 - 1))) >> _Q7
            out[s, k] = -_I8 if v < -_I8 else (_I8 if v > _I8 else v)


@njit(cache=True, nogil=True)
def i8_rescale_bias(acc, m, r, bias, out):
    """exact mm_i8's rescaling plus a bias: ((acc * m) >> r) + bias (int32 sums acc (S, N),
    multipliers m and bias (N,))."""
    S, N = acc.shape
    for s in range(S):
        for j in range(N):
            out[s, j] = ((np.int64(acc[s, j]) * m[j]) >> r) + bias[j]


# ------------------------------------------------------------------ backward (backward.py)

_D = 1 << 26        # backward.D_CLAMP
_T = 1 << 36        # backward.T_CLAMP


@njit(cache=True, inline="always")
def _ln_back_row(dg, y, base, sd, gain, gbase, n, out, obase):
    """backward.SegmentGrads._ln_back of one row: dg[base:base+n] (Q20), LayerNorm outputs
    y[base:base+n], their standard deviation sd and gains gain[gbase:gbase+n]; writes dz."""
    s1 = np.int64(0)
    s2 = np.int64(0)
    for j in range(n):
        dy = (dg[base + j] * gain[gbase + j]) >> _FRAC
        s1 += dy
        s2 += (dy * y[base + j]) >> _FRAC
    m1 = s1 // n
    m2 = s2 // n
    for j in range(n):
        dy = (dg[base + j] * gain[gbase + j]) >> _FRAC
        t = _clip(dy - m1 - ((y[base + j] * m2) >> _FRAC), _T)
        out[obase + j] = _clip((t << _FRAC) // sd, _D)


@njit(cache=True, nogil=True)
def cell_back(dh_out, dc_out, cs, y4, sd4, sf, si, tj, yc, sdc, tl, so, ln_gain, lnc_gain,
              kh, kc, dz, dh_prev, dcs):
    """backward.SegmentGrads._cell_back up to the product with the recurrent matrix: writes
    dz (A, 4n), dh_prev (A, n: the zoneout share only; the caller adds dz Wh^T and clamps) and
    dcs (A, n)."""
    A, n = dh_out.shape
    one = np.int64(1 << 15)
    full = np.int64(1 << 30)
    dlc = np.empty(n, dtype=np.int64)
    dcn = np.empty(n, dtype=np.int64)
    dg = np.empty(4 * n, dtype=np.int64)
    yrow = np.empty(4 * n, dtype=np.int64)
    for a in range(A):
        for j in range(n):
            dhn = (dh_out[a, j] * (one - kh)) >> 15
            dh_prev[a, j] = (dh_out[a, j] * kh) >> 15
            vs, vt = so[a, j], tl[a, j]
            dlc[j] = (((dhn * vs) >> 15) * ((full - vt * vt) >> 15)) >> 15
            dg[3 * n + j] = (((dhn * vt) >> 15) * ((vs * (one - vs)) >> 15)) >> 15
        _ln_back_row(dlc, yc[a], 0, sdc[a], lnc_gain, 0, n, dcn, 0)
        for j in range(n):
            dc = _clip(((dc_out[a, j] * (one - kc)) >> 15) + dcn[j], _D)
            vf, vi, vj = sf[a, j], si[a, j], tj[a, j]
            dcs[a, j] = _clip(((dc_out[a, j] * kc) >> 15) + ((dc * vf) >> 15), _D)
            dg[2 * n + j] = (((dc * cs[a, j]) >> _FRAC) * ((vf * (one - vf)) >> 15)) >> 15
            dg[j] = (((dc * vj) >> 15) * ((vi * (one - vi)) >> 15)) >> 15
            dg[n + j] = (((dc * vi) >> 15) * ((full - vj * vj) >> 15)) >> 15
        for g in range(4):
            for j in range(n):
                yrow[g * n + j] = y4[a, g, j]
        for g in range(4):
            _ln_back_row(dg, yrow, g * n, sd4[a, g], ln_gain, g * n, n, dz[a], g * n)


# ------------------------------------------------------------------ dynamic evaluation (dyneval.py)

@njit(cache=True, nogil=True)
def de_update(G, acc, acc0, r, d, div, g_clamp, d_bits, decay, lim, acc_shift, new_acc, p_out):
    """dyneval._apply for one parameter (all arrays flat): the clamped gradient sum G times the
    multipliers r, floor-divided by div, the decay towards the trained values when `decay`,
    the accumulator clamped to +-lim; writes the new accumulator and the parameter
    (acc >> acc_shift, into an int64 or float64 array)."""
    for i in range(G.shape[0]):
        g = _clip(G[i], g_clamp)
        a = acc[i]
        step = (g * r[i]) // div
        if decay:
            step = step - (((acc0[i] - a) * d[i]) >> d_bits)
        a = _clip(a - step, lim)
        new_acc[i] = a
        p_out[i] = a >> acc_shift
