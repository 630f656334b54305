"""Integer-exact FS-LSTM inference: the arithmetic the coder runs (no I/O, numpy or torch).

Every quantity is an integer; every operation is exact on any machine, thread count, batch
composition and device, so encoder and decoder compute identical tables
(docs/exactness.md):

- matrix products: int16-range weights x Q14 activations summed in float64. Products are below
  2**29 and K is far below 2**23, so every partial sum is an integer below 2**53: exact in any
  order. The result is rescaled by a power-of-two floor division.
- elementwise: int64 add, multiply, floor division and arithmetic shifts, with clamps that keep
  every intermediate below 2**62.
- LayerNorm's square root: floor(sqrt(v)) from float64 sqrt, then corrected by one integer step
  each way (so the result is the exact integer square root, whatever the platform's sqrt).
- sigmoid, tanh, exp: lookup tables on integer indices, computed once when the model is exported
  and stored in the model file (no libm at coding time).

Fixed-point formats: activations h and LSTM inputs Q14 (|v| <= 2**14 means |x| <= 1); gate
pre-activations, LayerNorm outputs, cell states, biases and gains Q16; LUT outputs Q15.

Shapes: S streams, n units per cell, F fast units, V = 256.

Two arithmetics share everything but the matrix products (the tag is the model file's
config["arith"], recorded in every header):

- ``exact-v1`` (quantize_model): the products above, int16-range weights with one power-of-two
  scale per matrix times Q14 activations, in float64.
- ``exact-i8-v1`` (quantize_model_i8): int8 weights (|w| <= 127) with one integer multiplier per
  output column, times the activations rounded to Q7 int8 (a8 = clamp((a + 64) >> 7, -127,
  127)); the int32 sums (|sum| <= 127 * 127 * K < 2**31) come from torch._int_mm (oneDNN/VNNI/AMX
  on the CPU, the same call on CUDA), from vpmaddwd on other AVX2 CPUs (x86mm.py), or, where
  those are missing or refuse a shape, from a float product of the same integers
  (int8_product; the fastest one here is chosen by timing). Q16 = floor(sum * m[col] / 2**r). The rest of the
  step (LayerNorm, lookup tables, softmax) is the same integer code as exact-v1.
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from .. import threads

ACT = 14                   # activations: Q14
FRAC = 16                  # pre-activations, cell state, LN parameters: Q16
LUT_OUT = 15               # sigmoid / tanh outputs: Q15
LUT_SHIFT = 6              # Q16 -> LUT index with 1/1024 resolution
LUT_HALF = 8 << 10         # LUT covers [-8, 8) in steps of 1/1024: 16384 entries
EXP_ENTRIES = 32 << 10     # exp(-d) for d in [0, 32) in steps of 1/1024
EXP_BITS = 29              # exp LUT values <= 2**29, so 256 of them sum below 2**38
Z_CLAMP = 1 << 23          # |pre-activation| <= 128.0
C_CLAMP = 1 << 22          # |cell state| <= 64.0
W_BITS = 15                # |quantised weight| < 2**15


# ------------------------------------------------------------------ backend shim

class _NumpyOps:
    name = "numpy"

    @staticmethod
    def asarray(x):
        return np.asarray(x)

    @staticmethod
    def zeros(shape):
        return np.zeros(shape, dtype=np.int64)

    @staticmethod
    def arange(n):
        return np.arange(n)

    @staticmethod
    def clamp(x, lo, hi):
        return np.minimum(np.maximum(x, lo), hi)  # np.clip's wrapper costs 10 us a call

    @staticmethod
    def mm_shift(a, w_f64, shift):
        # exact: integer-valued float64 product, then floor(x / 2**shift) (shift may be < 0)
        prod = a.astype(np.float64) @ w_f64
        return np.floor(prod * (2.0 ** -shift)).astype(np.int64)

    @staticmethod
    def mm_i8(a, w8, m, r):
        # exact: int8 digits of a (Q7) x int8 weights -> int32, times the column multipliers
        import torch
        a8 = torch.from_numpy(np.ascontiguousarray(to_q7(a, _NumpyOps).astype(np.int8)))
        acc = int8_product(a8, w8).numpy()
        return (acc.astype(np.int64) * m) >> r

    @staticmethod
    def floordiv(a, b):
        # exact floor(a / b) for int64 |a| < 2**53, 0 < b < 2**53: the float64 quotient is within
        # one of the true one, and one integer correction each way makes it exact (numpy's int64
        # division is several times slower than this)
        q = np.floor(a.astype(np.float64) / b.astype(np.float64)).astype(np.int64)
        r = a - q * b
        q -= (r < 0).astype(np.int64)
        q += (r >= b).astype(np.int64)
        return q

    @staticmethod
    def isqrt(v):
        r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
        r -= (r * r > v).astype(np.int64)
        r += ((r + 1) * (r + 1) <= v).astype(np.int64)
        return r

    @staticmethod
    def rowmax(x):
        return x.max(axis=-1)


class _TorchOps:
    name = "torch"

    def __init__(self, device):
        import torch
        self.torch = torch
        self.device = device

    def asarray(self, x):
        t = self.torch
        if isinstance(x, np.ndarray):
            x = t.from_numpy(np.ascontiguousarray(x))
        return x.to(self.device)

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.torch.int64, device=self.device)

    def arange(self, n):
        return self.torch.arange(n, device=self.device)

    def clamp(self, x, lo, hi):
        return self.torch.clamp(x, lo, hi)

    def mm_shift(self, a, w_f64, shift):
        t = self.torch
        prod = t.matmul(a.to(t.float64), w_f64)
        return t.floor(prod * (2.0 ** -shift)).to(t.int64)

    def mm_i8(self, a, w8, m, r):
        t = self.torch
        acc = int8_product(to_q7(a, self).to(t.int8).contiguous(), w8)
        return (acc.to(t.int64) * m) >> r

    def floordiv(self, a, b):
        return self.torch.div(a, b, rounding_mode="floor")

    def isqrt(self, v):
        t = self.torch
        r = t.floor(t.sqrt(v.to(t.float64))).to(t.int64)
        r = r - (r * r > v).to(t.int64)
        r = r + ((r + 1) * (r + 1) <= v).to(t.int64)
        return r

    def rowmax(self, x):
        return x.max(dim=-1).values


ARITH_I16 = "exact-v1"
ARITH_I8 = "exact-i8-v1"
ARITHS = (ARITH_I16, ARITH_I8)
Q7_SHIFT = ACT - 7         # Q14 activations -> Q7 int8
I8_MAX = 127
I8_MULT_BITS = 15          # per-column multipliers m < 2**15


def arith_of(cfg: dict) -> str:
    """The arithmetic of a model file's config (files without the key are exact-v1)."""
    return cfg.get("arith", ARITH_I16)


# tests set this to check that the fallback gives torch._int_mm's integers
FORCE_INT8_FALLBACK = False
# Every |product| is at most 127 * 128, so below this many terms every partial sum is an integer
# under 2**24, which float32 holds exactly whatever the order of summation.
_F32_EXACT_K = (1 << 24) // (127 * 128)
# Which CPU product is faster here, chosen once per process by timing both on one shape
# (_choose_cpu_product); both give the same integers, so the choice never changes the bytes.
_CPU_PRODUCT = None


# float copies and packed forms of the weight matrices (the second operand), kept while the
# matrix lives
_PER_MATRIX: dict = {}


def _per_matrix(w8, tag, make):
    """make(w8), computed once per weight tensor and tag."""
    key = (id(w8), tag)
    hit = _PER_MATRIX.get(key)
    if hit is not None and hit[0]() is w8:
        return hit[1]
    v = make(w8)
    _PER_MATRIX[key] = (weakref.ref(w8, lambda _, key=key: _PER_MATRIX.pop(key, None)), v)
    return v


def _float_product(a8, w8, as_float=False):
    import torch
    dt = torch.float32 if a8.shape[1] < _F32_EXACT_K else torch.float64
    z = torch.matmul(a8.to(dt), _per_matrix(w8, dt, lambda w: w.to(dt)))
    return z if as_float else z.to(torch.int32)


def _avx2_product(a8, w8):
    """x86mm.product on torch CPU tensors (the weights packed once per matrix)."""
    import torch
    from . import x86mm
    packed = _per_matrix(w8, "avx2", lambda w: x86mm.Packed(w.numpy()))
    return torch.from_numpy(x86mm.product(a8.numpy(), packed))


def cpu_products() -> dict:
    """The exact int8 products this CPU can run, by name: "int_mm" (torch._int_mm: oneDNN on
    AVX-512 VNNI or AMX, a plain loop elsewhere), "avx2" (x86mm, where it runs), "float"."""
    import torch
    out = {"int_mm": torch._int_mm}
    from . import x86mm
    if x86mm.available():
        out["avx2"] = _avx2_product
    out["float"] = _float_product
    return out


def _choose_cpu_product() -> str:
    """The fastest of cpu_products() on one shape: "int_mm" on CPUs with int8 dot-product units
    (AVX-512 VNNI, AMX), "avx2" on other x86-64 CPUs with AVX2 (vpmaddwd: 70 against 40 GMAC/s
    for float32 on a Zen 3 core, bench/results/speed.md), else "float" (torch._int_mm without
    those units is a plain loop, 1 GOP/s). All give the same integers."""
    import time
    import torch
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-127, 128, (64, 512), dtype=torch.int8, generator=g)
    w = torch.randint(-127, 128, (512, 512), dtype=torch.int8, generator=g)
    best = {}
    for name, fn in cpu_products().items():
        try:
            fn(a, w)
        except (RuntimeError, AttributeError, NotImplementedError):
            continue
        t = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn(a, w)
            t.append(time.perf_counter() - t0)
        best[name] = min(t)
    return min(best, key=best.get)


def int8_product(a8, w8, as_float=False):
    """(S, K) x (K, N) int8 torch tensors -> int32 sums, exact: the fastest product here
    (_choose_cpu_product: torch._int_mm, the AVX2 kernel), else a float product of the same
    integers (float32 while every partial sum stays below 2**24, float64 beyond: any summation
    order gives the same result). With
    `as_float`, the float product's integer-valued result is returned as it is (the compiled
    kernels read int32 and float sums alike)."""
    global _CPU_PRODUCT
    import torch
    if not FORCE_INT8_FALLBACK:
        if not a8.is_cuda and _CPU_PRODUCT is None:
            _CPU_PRODUCT = _choose_cpu_product()
        if a8.is_cuda or _CPU_PRODUCT == "int_mm":
            try:
                return torch._int_mm(a8, w8)
            except (RuntimeError, AttributeError, NotImplementedError):
                pass
        elif _CPU_PRODUCT == "avx2":
            return _avx2_product(a8, w8)
    return _float_product(a8, w8, as_float)


def to_q7(a, ops):
    """Q14 activations (|a| <= 2**14) -> Q7, rounded half up, clamped to +-127."""
    return ops.clamp((a + (1 << (Q7_SHIFT - 1))) >> Q7_SHIFT, -I8_MAX, I8_MAX)


def ops_for(backend: str = "numpy", device: str = "cpu"):
    if backend == "numpy":
        return _NumpyOps()
    if backend == "torch":
        return _TorchOps(device)
    raise ValueError(f"unknown backend {backend!r}")


# ------------------------------------------------------------------ quantisation (export time)

def _q(x: np.ndarray, bits: int) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64) * (1 << bits)).astype(np.int64)


def _weight(w: np.ndarray) -> tuple[np.ndarray, int]:
    """Power-of-two scaled int weights: (w_q, s) with w ~ w_q / 2**s and |w_q| < 2**15."""
    m = float(np.abs(w).max()) if w.size else 0.0
    s = W_BITS - 1 - (math.frexp(m)[1] if m > 0 else 0)  # m < 2**e  ->  |w_q| < 2**(W_BITS-1)
    return np.round(w.astype(np.float64) * 2.0 ** s).astype(np.int64), s


def build_luts() -> dict[str, np.ndarray]:
    """Nonlinearity tables, evaluated at the middle of each index bin."""
    x = (np.arange(-LUT_HALF, LUT_HALF, dtype=np.float64) + 0.5) / 1024.0
    sig = np.round((1 << LUT_OUT) / (1.0 + np.exp(-x))).astype(np.int64)
    tanh = np.round((1 << LUT_OUT) * np.tanh(x)).astype(np.int64)
    d = (np.arange(EXP_ENTRIES, dtype=np.float64) + 0.5) / 1024.0
    ex = np.round((1 << EXP_BITS) * np.exp(-d)).astype(np.int64)
    ex[0] = 1 << EXP_BITS
    return {"lut_sigmoid": sig, "lut_tanh": tanh, "lut_exp": ex}


def quantize_model(cfg: dict, sd: dict) -> dict:
    """Float state dict (numpy float arrays, names as in model.FSRNN) -> integer model tensors.

    F1's input half is folded with the embedding into a per-byte table (256, 4F), so the first
    cell needs no input product at all."""
    k = cfg["k"]
    out: dict = {}
    cells = [f"fast.{i}" for i in range(k)] + ["slow"]
    for c in cells:
        n_in = sd[f"{c}.W"].shape[0] - sd[f"{c}.ln_gain"].shape[0] // 4
        W = sd[f"{c}.W"]
        Wh, sh = _weight(W[n_in:])
        out[f"{c}.Wh"], out[f"{c}.sh"] = Wh, sh
        if c in ("fast.1", "slow"):
            Wx, sx = _weight(W[:n_in])
            out[f"{c}.Wx"], out[f"{c}.sx"] = Wx, sx
        out[f"{c}.b"] = _q(sd[f"{c}.b"], FRAC)
        for p in ("ln_gain", "ln_bias", "lnc_gain", "lnc_bias"):
            out[f"{c}.{p}"] = _q(sd[f"{c}.{p}"], FRAC)
    E = sd["embedding"].astype(np.float64)
    W1 = sd["fast.0.W"].astype(np.float64)[: E.shape[1]]
    out["in_table"] = _q(E @ W1 + sd["fast.0.b"], FRAC)          # (256, 4F), bias included
    out["out_W"], out["out_sw"] = _weight(sd["out_W"])
    out["out_b"] = _q(sd["out_b"], FRAC)
    out.update(build_luts())
    return out


def _weight_i8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-column int8 weights: (w8, m, r) with w[:, n] ~ w8[:, n] * m[n] / 2**(r + FRAC - 7),
    |w8| <= 127 and 0 <= m < 2**I8_MULT_BITS, so that floor(sum(a8 * w8) * m / 2**r) is the
    Q16 product of Q7 activations a8."""
    w = np.asarray(w, dtype=np.float64)
    sc = np.abs(w).max(axis=0) / I8_MAX                       # per output column
    safe = np.where(sc > 0, sc, 1.0)
    w8 = np.where(sc > 0, np.clip(np.round(w / safe), -I8_MAX, I8_MAX), 0).astype(np.int64)
    f = sc * 2.0 ** (FRAC - 7)                                # Q16 per unit of sum(a8 * w8)
    top = float(f.max()) if f.size else 0.0
    r = I8_MULT_BITS - 1 - (math.frexp(top)[1] if top > 0 else 0)   # top * 2**r < 2**(bits-1)
    m = np.round(f * 2.0 ** r).astype(np.int64)
    if r < 0 or r > 48:
        raise ValueError(f"weights out of the int8 arithmetic's range (shift {r})")
    return w8, m, r


def quantize_model_i8(cfg: dict, sd: dict) -> dict:
    """quantize_model with int8 weights and per-column multipliers (arithmetic exact-i8-v1):
    every product matrix NAME becomes NAME (int8 values), NAME.m (multipliers), NAME.r (shift);
    the per-byte input table, biases, LayerNorm parameters and tables are exact-v1's."""
    out = quantize_model(cfg, sd)
    k = cfg["k"]
    for c in [f"fast.{i}" for i in range(k)] + ["slow"]:
        n_in = sd[f"{c}.W"].shape[0] - sd[f"{c}.ln_gain"].shape[0] // 4
        parts = {"Wh": sd[f"{c}.W"][n_in:]}
        if c in ("fast.1", "slow"):
            parts["Wx"] = sd[f"{c}.W"][:n_in]
        for p, w in parts.items():
            del out[f"{c}.s{p[1]}"]
            out[f"{c}.{p}"], out[f"{c}.{p}.m"], out[f"{c}.{p}.r"] = _weight_i8(w)
    del out["out_sw"]
    out["out_W"], out["out_W.m"], out["out_W.r"] = _weight_i8(sd["out_W"])
    return out


# ------------------------------------------------------------------ inference

class ExactFSRNN:
    """Steps S streams of the integer model. All arrays are int64 (weights as float64 copies of
    integers, for the exact products). On the numpy backend the elementwise work of a step runs
    in compiled kernels (fused.py, the same integers) unless `use_kernels` is False."""

    use_kernels = True

    def __init__(self, cfg: dict, q: dict, backend: str = "numpy", device: str = "cpu",
                 use_kernels: bool | None = None):
        self.cfg = cfg
        self.ops = o = ops_for(backend, device)
        self.k = cfg["k"]
        # record=True keeps each step's intermediates in self.tape (full dynamic evaluation)
        self.record, self.tape = False, None
        self.fb = int(round(cfg["forget_bias"] * (1 << FRAC)))
        self.eps = int(round(cfg["ln_eps"] * (1 << (2 * FRAC))))
        self.keep_h = int(round(cfg["zoneout_h"] * (1 << 15)))
        self.keep_c = int(round(cfg["zoneout_c"] * (1 << 15)))
        if use_kernels is not None:
            self.use_kernels = use_kernels
        self._fused = o.name == "numpy" and self.use_kernels
        if self._fused:
            from . import fused  # noqa: F401 - compiles or loads the kernels now
        self.arith = arith_of(cfg)
        if self.arith not in ARITHS:
            raise ValueError(f"unknown FS-LSTM arithmetic {self.arith!r}")
        self.i8 = self.arith == ARITH_I8
        self.p = {}
        for name, v in q.items():
            if isinstance(v, (int, np.integer)):
                self.p[name] = int(v)
            elif self.i8 and name.endswith((".Wh", ".Wx", "out_W")):
                import torch    # int8 weights as a torch tensor, for int8_product
                w8 = torch.from_numpy(np.ascontiguousarray(np.asarray(v, dtype=np.int8)))
                self.p[name] = w8.to(device) if o.name == "torch" else w8
            else:
                a = o.asarray(np.asarray(v, dtype=np.int64))
                if name.endswith((".Wh", ".Wx")) or name == "out_W":
                    a = a.double() if o.name == "torch" else a.astype(np.float64)
                self.p[name] = a
        # float64 copies for fused.cell_i8f, where the model's ranges keep it exact
        self.pf = self._float_cell_tables() if self.i8 and self._fused else None

    def _float_cell_tables(self):
        """The tables fused.cell_i8f reads, or None where this model's values are outside the
        ranges under which its float64 arithmetic is exact (then fused.cell_i8 runs)."""
        p, k = self.p, self.k
        cells = [f"fast.{i}" for i in range(k)] + ["slow"]
        lut = np.concatenate([p["lut_sigmoid"], p["lut_tanh"]])
        big = 1 << 28
        ok = np.abs(lut).max() <= 1 << LUT_OUT and abs(self.fb) < big \
            and np.abs(p["in_table"]).max() < 1 << 40
        pf = {"lut": lut.astype(np.int32), "in_table": p["in_table"].astype(np.float64)}
        for c in cells:
            n = p[f"{c}.lnc_gain"].shape[0]
            ok = ok and n <= 4096 and all(np.abs(p[f"{c}.{t}"]).max() < big for t in (
                "ln_gain", "ln_bias", "lnc_gain", "lnc_bias")) and np.abs(p[f"{c}.b"]).max() < 1 << 40
            fb = np.zeros(4 * n, dtype=np.int64)
            fb[2 * n:3 * n] = self.fb
            pf[f"{c}.gain"] = p[f"{c}.ln_gain"].astype(np.float64)
            pf[f"{c}.bias_hi"] = ((p[f"{c}.ln_bias"] + fb) << FRAC).astype(np.float64)
            pf[f"{c}.lnc_gain"] = p[f"{c}.lnc_gain"].astype(np.float64)
            pf[f"{c}.lncb_hi"] = (p[f"{c}.lnc_bias"] << FRAC).astype(np.float64)
            for w in ("Wh", "Wx"):
                if f"{c}.{w}.m" in p:
                    pf[f"{c}.{w}.mf"] = np.asarray(p[f"{c}.{w}.m"]).astype(np.float64)
                    pf[f"{c}.{w}.rs"] = 2.0 ** -int(p[f"{c}.{w}.r"])
        return pf if ok else None

    # -- pieces

    def _mm(self, a, name, sname, add=None, rows=None):
        """(S, n_in) Q14 activations times matrix `name` -> Q16, plus `add` ((S, N) or (N,)), or
        plus add[rows] when `rows` (symbols) is given: integer sums, in whatever order."""
        p = self.p
        if self.pf is not None and not self.record and name.endswith(".Wx") and add is not None \
                and add.ndim == 1 and rows is None:
            from . import fused     # the input part in float64, for fused.cell_i8f
            acc = self._acc8(a, name)
            out = np.empty(acc.shape, dtype=np.float64)
            fused.i8_rescale_bias_f(acc, self.pf[name + ".mf"], self.pf[name + ".rs"],
                                    np.asarray(add, dtype=np.float64), out)
            return out
        if self.i8 and self._fused and rows is None and add is not None and add.ndim == 1:
            from . import fused     # ops.mm_i8's integers plus a bias, in one compiled pass
            acc = self._acc8(a, name)
            out = np.empty(acc.shape, dtype=np.int64)
            fused.i8_rescale_bias(acc, p[name + ".m"], p[name + ".r"], add, out)
            return out
        if self.i8:
            z = self.ops.mm_i8(a, p[name], p[name + ".m"], p[name + ".r"])
        else:
            z = self.ops.mm_shift(a, p[name], ACT + p[sname] - FRAC)
        if add is None:
            return z
        return z + (add[rows] if rows is not None else add)

    def _acc8(self, a, name):
        """The sums of the Q7 activations a times int8 matrix `name` (numpy backend): int32, or
        the float product's integer-valued float32/float64 (int8_product's as_float)."""
        import torch
        from . import fused
        a8 = np.empty(a.shape, dtype=np.int8)
        fused.q7(np.ascontiguousarray(a), a8)
        return int8_product(torch.from_numpy(a8), self.p[name], as_float=True).numpy()

    def _ln_y(self, z, n):
        """Normalised z over the last axis of (S, m, n) or (S, n), Q16 in and out, and its
        standard deviation (Q16)."""
        o = self.ops
        z = o.clamp(z, -Z_CLAMP, Z_CLAMP)
        mean = z.sum(-1) // n
        d = z - mean[..., None]
        var = (d * d).sum(-1) // n                        # Q32
        sd = o.isqrt(var + self.eps)                      # Q16, >= isqrt(eps) > 0
        return o.floordiv(d << FRAC, sd[..., None]), sd   # Q16, |d << 16| < 2**41

    def _ln(self, z, n, gain, bias):
        """Layer norm over the last axis of z (S, m, n) or (S, n), Q16 in and out."""
        y, _ = self._ln_y(z, n)
        return ((y * gain) >> FRAC) + bias

    def _lut(self, name, x):
        idx = self.ops.clamp(x >> LUT_SHIFT, -LUT_HALF, LUT_HALF - 1) + LUT_HALF
        return self.p[name][idx]

    def _cell(self, c, zx, h, cs, rows=None):
        """One layer-normalised LSTM cell with the evaluation-time zoneout blend.
        zx: (S, 4n) Q16 input part incl. bias (or, with `rows`, a table of them indexed by
        rows); h: (S, n) Q14; cs: (S, n) Q16."""
        n = h.shape[-1]
        if self.i8 and self._fused:
            return self._cell_fused(c, None, h, cs, zx, rows)
        z = self._mm(h, f"{c}.Wh", f"{c}.sh", add=zx, rows=rows)      # (S, 4n) Q16
        if self._fused:
            return self._cell_fused(c, z, h, cs)
        S = z.shape[0]
        y4, sd4 = self._ln_y(z.reshape(S, 4, n), n)
        g = ((y4 * self.p[f"{c}.ln_gain"].reshape(4, n)) >> FRAC) \
            + self.p[f"{c}.ln_bias"].reshape(4, n)                      # (S, 4, n)
        i, j, f, og = g[:, 0], g[:, 1], g[:, 2], g[:, 3]
        sf = self._lut("lut_sigmoid", f + self.fb)                     # Q15
        si = self._lut("lut_sigmoid", i)
        tj = self._lut("lut_tanh", j)
        c_new = ((cs * sf) >> LUT_OUT) + ((si * tj) >> (2 * LUT_OUT - FRAC))
        c_new = self.ops.clamp(c_new, -C_CLAMP, C_CLAMP)              # Q16
        yc, sdc = self._ln_y(c_new, n)
        lc = ((yc * self.p[f"{c}.lnc_gain"]) >> FRAC) + self.p[f"{c}.lnc_bias"]
        tl, so = self._lut("lut_tanh", lc), self._lut("lut_sigmoid", og)
        h_new = (tl * so) >> (2 * LUT_OUT - ACT)
        kh, kc = self.keep_h, self.keep_c
        h_out = (kh * h + ((1 << 15) - kh) * h_new) >> 15
        c_out = (kc * cs + ((1 << 15) - kc) * c_new) >> 15
        if self.tape is not None:   # what the exact backward pass (dyneval.py) needs
            self.tape[c] = {"h": h, "cs": cs, "y4": y4, "sd4": sd4, "sf": sf, "si": si,
                            "tj": tj, "yc": yc, "sdc": sdc, "tl": tl, "so": so}
        return h_out, c_out

    def _cell_fused(self, c, z, h, cs, zx=None, rows=None):
        """_cell's work after the product in one compiled pass (fused.cell): the same integers.
        With z None (exact-i8-v1), the product's rescaling and the input part zx (or zx[rows])
        are added in the same pass (fused.cell_i8)."""
        from . import fused
        S, n = h.shape
        e = np.empty
        h_out, c_out = e((S, n), np.int64), e((S, n), np.int64)
        rec = self.tape is not None
        S1, n1 = (S, n) if rec else (1, 1)     # without a tape the kernel writes none of it
        t = {"h": h, "cs": cs, "y4": e((S1, 4, n1), np.int64), "sd4": e((S1, 4), np.int64),
             "sf": e((S1, n1), np.int64), "si": e((S1, n1), np.int64),
             "tj": e((S1, n1), np.int64), "yc": e((S1, n1), np.int64), "sdc": e(S1, np.int64),
             "tl": e((S1, n1), np.int64), "so": e((S1, n1), np.int64)}
        p = self.p
        h, cs = np.ascontiguousarray(h), np.ascontiguousarray(cs)
        rest = (h, cs, p[f"{c}.ln_gain"], p[f"{c}.ln_bias"], p[f"{c}.lnc_gain"],
                p[f"{c}.lnc_bias"], p["lut_sigmoid"], p["lut_tanh"], self.fb, self.eps,
                self.keep_h, self.keep_c, h_out, c_out, t["y4"], t["sd4"], t["sf"], t["si"],
                t["tj"], t["yc"], t["sdc"], t["tl"], t["so"], rec)
        if z is not None:
            fused.cell(np.ascontiguousarray(z), *rest)
        else:
            name = f"{c}.Wh"
            acc = self._acc8(h, name)
            if rows is not None:
                add, idx = zx, np.ascontiguousarray(rows, dtype=np.int64)
            elif zx.ndim == 1:
                add, idx = zx[None, :], np.zeros(S, dtype=np.int64)
            else:
                add, idx = np.ascontiguousarray(zx), np.arange(S, dtype=np.int64)
            if self.pf is not None and not rec:
                pf = self.pf
                if rows is not None:
                    add = pf["in_table"]
                elif zx.ndim == 1:
                    add = np.asarray(zx, dtype=np.float64)[None, :]
                fused.cell_i8f(acc, pf[name + ".mf"], pf[name + ".rs"], add, idx, h, cs,
                               pf[f"{c}.gain"], pf[f"{c}.bias_hi"], pf[f"{c}.lnc_gain"],
                               pf[f"{c}.lncb_hi"], pf["lut"], self.eps, self.keep_h,
                               self.keep_c, h_out, c_out)
            else:
                fused.cell_i8(acc, p[name + ".m"], p[name + ".r"], add, idx, *rest)
        if rec:
            self.tape[c] = t
        return h_out, c_out

    def _weights(self, hF):
        """Output layer and integer softmax: (S, F) Q14 -> (S, 256) weights summing < 2**38."""
        logits = self._mm(hF, "out_W", "out_sw", add=self.p["out_b"])  # Q16
        if self._fused:
            from . import fused
            out = np.empty(logits.shape, dtype=np.int64)
            fused.softmax_weights(np.ascontiguousarray(logits), self.p["lut_exp"], out)
            return out
        d = self.ops.rowmax(logits)[:, None] - logits                # >= 0
        idx = self.ops.clamp(d >> LUT_SHIFT, 0, EXP_ENTRIES - 1)
        return self.p["lut_exp"][idx]

    # -- the predictor protocol (state kept here; streams only ever drop off the end)

    def start(self, n_streams: int):
        o, cfg = self.ops, self.cfg
        self.hF = o.zeros((n_streams, cfg["fast"]))
        self.cF = o.zeros((n_streams, cfg["fast"]))
        self.hS = o.zeros((n_streams, cfg["slow"]))
        self.cS = o.zeros((n_streams, cfg["slow"]))
        self.tape = None
        return self._weights(self.hF)

    def step(self, symbols):
        a = symbols.shape[0]
        if self.record:
            self.tape = {"symbols": symbols}
        st = (self.hF[:a], self.cF[:a], self.hS[:a], self.cS[:a])
        ranges = self._parts(a)
        if len(ranges) == 1:
            *st, w = self._step_rows(symbols, *st)
        else:   # the streams in parts, one per thread: every row's integers are its own
            done = threads.run(self._step_rows, [(symbols[lo:hi], *(x[lo:hi] for x in st))
                                                 for lo, hi in ranges])
            st = [np.concatenate([d[i] for d in done]) for i in range(4)]
            w = np.concatenate([d[4] for d in done])
        self.hF, self.cF, self.hS, self.cS = st
        return w

    # Streams per thread from which splitting a step pays; parts start on the AVX2 product's
    # row blocks (x86mm.ROWS).
    MIN_PART_STREAMS = 48

    def _parts(self, a: int) -> list:
        """The stream ranges a step of `a` streams is split into (one range: not split). Only the
        compiled numpy path without a tape is split."""
        if not self._fused or self.record:
            return [(0, a)]
        from . import x86mm
        return threads.parts(a, threads.count(), self.MIN_PART_STREAMS, align=x86mm.ROWS)

    def _step_rows(self, symbols, hF, cF, hS, cS):
        """One step of these streams: their new state and output weights."""
        hF, cF = self._cell("fast.0", self.p["in_table"], hF, cF, rows=symbols)
        if self.tape is not None:
            self.tape["x.slow"] = hF
        hS, cS = self._cell("slow", self._mm(hF, "slow.Wx", "slow.sx", add=self.p["slow.b"]),
                            hS, cS)
        if self.tape is not None:
            self.tape["x.fast.1"] = hS
        hF, cF = self._cell("fast.1", self._mm(hS, "fast.1.Wx", "fast.1.sx",
                                               add=self.p["fast.1.b"]), hF, cF)
        for i in range(2, self.k):
            hF, cF = self._cell(f"fast.{i}", self.p[f"fast.{i}.b"], hF, cF)
        return hF, cF, hS, cS, self._weights(hF)
