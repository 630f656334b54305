"""Exact backward pass of the integer FS-LSTM over a segment (truncated BPTT), for dynamic
evaluation of every weight matrix (dyneval.py, scope "full"). No I/O; numpy or torch via the ops
shim of exact.py.

The forward pass (exact.ExactFSRNN with record=True) keeps each step's intermediates: LayerNorm
outputs y and standard deviations, gate values from the lookup tables, cell inputs and states. The
backward pass differentiates the integer model's real-valued counterpart at those values:

- sigmoid' = s (1 - s) and tanh' = 1 - t^2 from the stored table outputs (no new tables);
- LayerNorm: dz = (dy - mean(dy) - y mean(dy y)) / sd with dy = dg * gain;
- zoneout's evaluation-time blend, the cell update and the products as written in exact._cell.

Fixed point: the gradient of the code length with respect to the logits is p - onehot in Q16
(as for the output layer); all deltas inside the network are Q20, clamped to |d| <= 2**26 after
every product with a weight matrix or a LayerNorm, so that every product with a weight matrix is
an exact float64 sum (|d| * |W| * K <= 2**26 * 2**15 * 2**11 with K = 4n <= 2048) and every
elementwise product stays below 2**62. A weight gradient is the sum over the segment's rows
(streams x steps) of x^T d: float64 products over chunks of 4096 rows (|x| |d| 4096 <= 2**14 *
2**26 * 2**12 < 2**53, exact) summed in int64; with at most 256 streams and 1024 steps per
segment every sum stays below 2**58. Matrix gradients are then floored to Q30 (x Q14 times d Q20,
/ 2**4), biases and the input table to Q16. Floors (>>) round toward minus infinity, the same way
on every machine.

Which parameters: the output layer, every cell's recurrent matrix, the input matrices of fast.1
and slow, the biases of fast.1..k-1 and slow, and fast.0's per-byte input table (embedding times
input matrix, bias included). The LayerNorm gains and biases stay as trained.
"""
from __future__ import annotations

import numpy as np

from . import exact

D_FRAC = 20                 # deltas: Q20
D_CLAMP = 1 << 26
T_CLAMP = 1 << 36           # LayerNorm numerator before << 16 (float64 division stays exact)
CHUNK = 4096               # rows per exact float64 outer-product sum
MAX_STREAMS = 256          # streams and steps per segment that keep every sum below 2**58
MAX_SEGMENT = 1024
MAX_K = 2048                # 4n of any cell


def full_params(cfg: dict) -> list[str]:
    k = cfg["k"]
    cells = [f"fast.{i}" for i in range(k)] + ["slow"]
    names = ["out_W", "out_b", "in_table"] + [f"{c}.Wh" for c in cells]
    names += ["fast.1.Wx", "fast.1.b", "slow.Wx", "slow.b"] + [f"fast.{i}.b" for i in range(2, k)]
    return names


def grad_bits(name: str, q: dict) -> tuple[int, int]:
    """(fraction bits of the parameter's integer form, fraction bits of its gradient sum)."""
    if name == "out_W":
        return int(q["out_sw"]), exact.ACT + 16
    if name.endswith(".Wh"):
        return int(q[name[:-3] + ".sh"]), exact.ACT + 16
    if name.endswith(".Wx"):
        return int(q[name[:-3] + ".sx"]), exact.ACT + 16
    return exact.FRAC, 16


def is_matrix(name: str) -> bool:
    return name == "out_W" or name.endswith((".Wh", ".Wx"))


def check_sizes(cfg: dict, n_streams: int) -> None:
    if 4 * max(cfg["fast"], cfg["slow"]) > MAX_K or n_streams > MAX_STREAMS:
        raise ValueError(f"full dynamic evaluation needs 4 x units <= {MAX_K} and at most "
                         f"{MAX_STREAMS} streams")


def _f64(o, x):
    return x.double() if o.name == "torch" else x.astype(np.float64)


def _t(x):
    return x.T


def _pad(o, x, rows: int):
    if x is None:
        return None
    if x.shape[0] == rows:
        return x
    out = o.zeros((rows,) + tuple(x.shape[1:]))
    out[: x.shape[0]] = x
    return out


def _cat(o, parts):
    if o.name == "torch":
        return o.torch.cat(parts, 0)
    return np.concatenate(parts, 0)


def _stack4(o, parts):
    if o.name == "torch":
        return o.torch.stack(parts, 1)
    return np.stack(parts, 1)


def _index_add(o, table, idx, rows):
    if o.name == "torch":
        return table.index_add(0, idx, rows)
    out = table.copy()
    np.add.at(out, idx, rows)
    return out


class SegmentGrads:
    """Integer gradient sums of one segment: add(err, h, tape) per step, then backward()."""

    def __init__(self, net: exact.ExactFSRNN):
        self.net, self.o = net, net.ops
        self.names = full_params(net.cfg)
        self.entries: list = []
        self.n = 0

    def add(self, err, hF, tape) -> None:
        self.entries.append((err, hF, tape))
        self.n += int(err.shape[0])

    def reset(self) -> None:
        self.entries, self.n = [], 0

    # -- pieces

    def _clamp(self, x, lim=D_CLAMP):
        return self.o.clamp(x, -lim, lim)

    def _ln_back(self, dg, y, sd, gain, n):
        o = self.o
        dy = (dg * gain) >> exact.FRAC                                     # Q20
        m1 = dy.sum(-1) // n
        m2 = ((dy * y) >> exact.FRAC).sum(-1) // n                         # Q20
        t = dy - m1[..., None] - ((y * m2[..., None]) >> exact.FRAC)
        t = self._clamp(t, T_CLAMP)
        return self._clamp(o.floordiv(t << exact.FRAC, sd[..., None]))    # Q20

    def _cell_back(self, c, tp, dh_out, dc_out):
        """Back through one cell of one step: (dz, dh_prev, dcs); dz is queued for dWh."""
        o, net, p = self.o, self.net, self.net.p
        n = tp["h"].shape[-1]
        A = tp["h"].shape[0]
        kh, kc = net.keep_h, net.keep_c
        if net._fused:   # the same integers in one compiled pass (fused.cell_back)
            from . import fused
            dz = np.empty((A, 4 * n), dtype=np.int64)
            dh_prev, dcs = np.empty((A, n), dtype=np.int64), np.empty((A, n), dtype=np.int64)
            c_ = np.ascontiguousarray
            fused.cell_back(c_(dh_out), c_(dc_out), c_(tp["cs"]), tp["y4"], tp["sd4"], tp["sf"],
                            tp["si"], tp["tj"], tp["yc"], tp["sdc"], tp["tl"], tp["so"],
                            p[f"{c}.ln_gain"], p[f"{c}.lnc_gain"], kh, kc, dz, dh_prev, dcs)
            dh_prev = self._clamp(dh_prev + o.mm_shift(dz, _t(p[f"{c}.Wh"]), p[f"{c}.sh"]))
            self._queue(f"{c}.Wh", tp["h"], dz)
            return dz, dh_prev, dcs
        one = 1 << 15
        dh_new = (dh_out * (one - kh)) >> 15
        dh_prev = (dh_out * kh) >> 15
        dc_new = (dc_out * (one - kc)) >> 15
        dcs = (dc_out * kc) >> 15
        so, tl = tp["so"], tp["tl"]
        dlc = (((dh_new * so) >> 15) * (((1 << 30) - tl * tl) >> 15)) >> 15
        dog = (((dh_new * tl) >> 15) * ((so * (one - so)) >> 15)) >> 15
        dc_new = self._clamp(dc_new + self._ln_back(dlc, tp["yc"], tp["sdc"],
                                                    p[f"{c}.lnc_gain"], n))
        sf, si, tj = tp["sf"], tp["si"], tp["tj"]
        dcs = self._clamp(dcs + ((dc_new * sf) >> 15))
        df = (((dc_new * tp["cs"]) >> exact.FRAC) * ((sf * (one - sf)) >> 15)) >> 15
        di = (((dc_new * tj) >> 15) * ((si * (one - si)) >> 15)) >> 15
        dj = (((dc_new * si) >> 15) * (((1 << 30) - tj * tj) >> 15)) >> 15
        dg = _stack4(o, [di, dj, df, dog])                                  # (A, 4, n)
        dz = self._ln_back(dg, tp["y4"], tp["sd4"], p[f"{c}.ln_gain"].reshape(4, n), n)
        dz = dz.reshape(A, 4 * n)
        dh_prev = self._clamp(dh_prev + o.mm_shift(dz, _t(p[f"{c}.Wh"]), p[f"{c}.sh"]))
        self._queue(f"{c}.Wh", tp["h"], dz)
        return dz, dh_prev, dcs

    def _queue(self, name, x, d):
        self._rows.setdefault(name, ([], []))
        self._rows[name][0].append(x)
        self._rows[name][1].append(d)

    def _outer(self, name, shift):
        """sum over the queued rows of x^T d, floor / 2**shift: float64 products in chunks
        of at most CHUNK rows, each exact (|x| |d| CHUNK < 2**53), summed as int64."""
        o = self.o
        xs, ds = self._rows[name]
        X, D = _cat(o, xs), _cat(o, ds)
        total = None
        for i in range(0, X.shape[0], CHUNK):
            part = o.mm_shift(_t(X[i:i + CHUNK]), _f64(o, D[i:i + CHUNK]), 0)
            total = part if total is None else total + part
        return total >> shift

    # -- the segment

    def backward(self) -> dict:
        """Gradient sums {name: int64 array} over the segment's coded bytes (truncated BPTT:
        the state entering the segment is a constant). Matrix gradients are Q30 (x Q14 times
        delta Q20, summed, then floored by 2**4), the output layer's Q30 (h Q14 times err Q16),
        biases and the input table Q16."""
        o, net, p = self.o, self.net, self.net.p
        k = net.k
        self._rows: dict = {}
        carry = None                        # (dhF, dcF, dhS, dcS) for the outputs of step j - 1
        for err, hF, tape in reversed(self.entries):
            a = err.shape[0]
            self._queue("out_W", hF[:a], err)
            if tape is None:                # the prediction made by start(): no step behind it
                carry = None
                continue
            A = tape["symbols"].shape[0]
            dh_loss = self._clamp(o.mm_shift(err, _t(p["out_W"]), p["out_sw"] - (D_FRAC - 16)))
            dhF = _pad(o, dh_loss, A)
            if carry is not None:
                c_dhF, c_dcF, c_dhS, c_dcS = (_pad(o, x, A) for x in carry)
                dhF, dcF, dhS, dcS = dhF + c_dhF, c_dcF, c_dhS, c_dcS
            else:
                dcF = o.zeros(dhF.shape)
                dhS = o.zeros(tape["slow"]["h"].shape)
                dcS = o.zeros(dhS.shape)
            for i in range(k - 1, 1, -1):                           # fast.k-1 .. fast.2
                dz, dhF, dcF = self._cell_back(f"fast.{i}", tape[f"fast.{i}"], dhF, dcF)
                self._queue(f"fast.{i}.b", None, dz)
            dz, dhF, dcF = self._cell_back("fast.1", tape["fast.1"], dhF, dcF)
            self._queue("fast.1.Wx", tape["x.fast.1"], dz)           # x: hS of this step
            dhS = self._clamp(dhS + o.mm_shift(dz, _t(p["fast.1.Wx"]), p["fast.1.sx"]))
            dz, dhS, dcS = self._cell_back("slow", tape["slow"], dhS, dcS)
            self._queue("slow.Wx", tape["x.slow"], dz)               # x: hF after fast.0
            dhF = self._clamp(dhF + o.mm_shift(dz, _t(p["slow.Wx"]), p["slow.sx"]))
            dz, dhF, dcF = self._cell_back("fast.0", tape["fast.0"], dhF, dcF)
            self._queue("in_table", tape["symbols"], dz)
            carry = (dhF, dcF, dhS, dcS)
        G: dict = {}
        errs = _cat(o, self._rows["out_W"][1])
        G["out_W"] = self._outer("out_W", 0)
        G["out_b"] = errs.sum(0)
        for name in self.names:
            if name in G:
                continue
            src = {"fast.1.b": "fast.1.Wx", "slow.b": "slow.Wx"}.get(name, name)
            if src != name and src in self._rows:       # the bias sees the same dz as Wx
                G[name] = _cat(o, self._rows[src][1]).sum(0) >> 4
            elif name not in self._rows:
                G[name] = o.zeros(tuple(p[name].shape))
            elif name.endswith((".Wh", ".Wx")):
                G[name] = self._outer(name, 4)
            elif name == "in_table":
                syms = _cat(o, self._rows[name][0])
                zero = o.zeros(tuple(p[name].shape))
                G[name] = _index_add(o, zero, syms, _cat(o, self._rows[name][1])) >> 4
            else:                                                    # biases
                G[name] = _cat(o, self._rows[name][1]).sum(0) >> 4
        self._rows = {}
        return G
