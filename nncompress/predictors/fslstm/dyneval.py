"""Exact dynamic evaluation of the FS-LSTM's output layer (Krause et al., integer arithmetic).

While coding, the predictor collects, for every coded byte, the gradient of its code length with
respect to the softmax weights and bias: (p - onehot(byte)) times the last fast cell's output h.
After every `segment` steps (one step codes one byte in each active stream) the summed gradient
of all streams updates one shared set of output weights with Krause's rule

    theta <- theta - lr * g / (MS + eps) + decay * decrate * (theta0 - theta)

where g is the segment's gradient sum over its N coded bytes divided by sqrt(N * N_REF) (the
mean, scaled by sqrt(N / N_REF): the step then grows as the square root of the bytes per update,
which is how the best learning rate moved with the stream count on trainpool shard 7), MS the
root-mean-square of such
segment gradients measured on training data when the model was exported (stored in the model
file), decrate = MS / mean(MS) clipped to 1/decay, and theta0 the trained weights. Only the
output layer adapts: the backward pass stops at the last fast cell's output, so no gradient flows
into the recurrent cells.

Everything the decoder must repeat is integer (../shared/notes/determinism.md):
- h is Q14 and p - onehot is Q16 (p = floor(w * 2**16 / sum w) from the model's integer weights),
  so each product is below 2**30 and a step's sum over at most 2**22 streams is an exact integer in
  float64 whatever the summation order; segment sums are int64.
- the weights live in int64 accumulators with 16 more fraction bits than the model's weights; the
  step is floor(G * r / (isqrt(N * N_REF) * 2**R)) with G clamped to 2**41 and a per-weight integer multiplier
  r < 2**21; the decay is floor((theta0 - theta) * d / 2**20) with d < 2**21.
- r and d are computed once, when the predictor is built, from the stored integer MS with IEEE
  float64 +, *, / only (correctly rounded, hence the same on every machine), then rounded.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from . import exact

ARITH = "de-out-v1"      # this file's update arithmetic; a change needs a new tag
ACC = 16                 # extra fraction bits of the accumulators
G_CLAMP = 1 << 41        # |segment gradient sum| used in an update
R_MAX_BITS = 21          # learning-rate multipliers r < 2**21
D_BITS = 20              # decay multipliers: Q20
N_REF = 64               # bytes per update at which lr is the plain RMS-normalised step
MS_BITS = 30             # stored MS: int < 2**30 with a per-tensor power-of-two scale
W_MAX = (1 << (exact.W_BITS)) - 1
B_MAX = exact.Z_CLAMP

# (parameter, its fixed-point fraction bits in the model, fraction bits of its gradient sum)
# out_W: weight q / 2**sw, gradient h (Q14) x err (Q16) -> Q30.  out_b: Q16, gradient err Q16.
PARAMS = ("out_W", "out_b")


@dataclass(frozen=True)
class DynEvalSettings:
    segment: int = 8        # steps between updates
    lr: float = 1e-3        # eta
    decay: float = 0.0      # lambda
    eps: float = 1e-4

    def __post_init__(self):
        if not (isinstance(self.segment, int) and 1 <= self.segment <= 1 << 16):
            raise ValueError(f"dynamic evaluation segment must be 1..65536 steps, not {self.segment}")
        for k in ("lr", "decay", "eps"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"dynamic evaluation {k} must be a finite number >= 0, not {v!r}")
        if self.decay > 1 or self.eps <= 0:
            raise ValueError("dynamic evaluation needs 0 <= decay <= 1 and eps > 0")

    def to_json(self) -> dict:
        return {"arith": ARITH, **{k: (float(v) if k != "segment" else v)
                                   for k, v in asdict(self).items()}}

    @classmethod
    def from_json(cls, d: dict) -> "DynEvalSettings":
        if d.get("arith") != ARITH:
            raise ValueError(f"dynamic evaluation arithmetic {d.get('arith')!r} is not {ARITH!r}")
        return cls(int(d["segment"]), float(d["lr"]), float(d["decay"]), float(d["eps"]))


def _grad_bits(name: str, q: dict) -> tuple[int, int]:
    """(fraction bits of the parameter's integer form, fraction bits of its gradient sum)."""
    if name == "out_W":
        return int(q["out_sw"]), exact.ACT + 16
    return exact.FRAC, 16


# ------------------------------------------------------------------ shared pieces

def probs_q16(w):
    """Integer weights (A, 256) -> floor(w * 2**16 / sum w): Q16 probabilities."""
    total = w.sum(-1)
    return (w << 16) // total[:, None]


def error_q16(ops, w, symbols):
    """p - onehot(symbol) in Q16, (A, 256) int64."""
    err = probs_q16(w)
    err[ops.arange(err.shape[0]), symbols] -= 1 << 16
    return err


class _Grad:
    """Sums the output-layer gradient over steps (exact int64)."""

    def __init__(self, ops, F: int):
        self.ops = ops
        self.F = F
        self.reset()

    def reset(self):
        self.gW = self.ops.zeros((self.F, 256))
        self.gb = self.ops.zeros((256,))
        self.n = 0
        self.steps = 0

    def add(self, h, w, symbols):
        o = self.ops
        err = error_q16(o, w, symbols)
        self.gW = self.gW + o.mm_shift(h.T, _f64(o, err), 0)   # exact: < 2**52
        self.gb = self.gb + err.sum(0)
        self.n += int(symbols.shape[0])
        self.steps += 1


def _f64(ops, x):
    return x.double() if ops.name == "torch" else x.astype(np.float64)


# ------------------------------------------------------------------ the adapter (coding time)

class OutputDynEval:
    """Adapts `net`'s output layer; call observe(symbols) before each net.step(symbols)."""

    def __init__(self, net: exact.ExactFSRNN, q: dict, settings: DynEvalSettings):
        if "de.ms.out_W" not in q:
            raise ValueError("this model file has no dynamic-evaluation statistics")
        self.net, self.s = net, settings
        o = self.ops = net.ops
        self.acc, self.acc0, self.r, self.R, self.d = {}, {}, {}, {}, {}
        for name in PARAMS:
            a0 = o.asarray(np.asarray(q[name], dtype=np.int64) << ACC)
            self.acc[name], self.acc0[name] = a0, a0
            r, R, d = multipliers(name, q, settings)
            self.r[name], self.R[name], self.d[name] = o.asarray(r), R, o.asarray(d)
        self.grad = _Grad(o, net.cfg["fast"])
        self.h = self.w = None
        self.updates = 0

    def predicted(self, w):
        """Records the prediction just made (and the h it came from)."""
        self.h, self.w = self.net.hF, w

    def observe(self, symbols) -> None:
        a = symbols.shape[0]
        self.grad.add(self.h[:a], self.w[:a], symbols)
        if self.grad.steps >= self.s.segment:
            self._update()

    def _update(self):
        o, g = self.ops, self.grad
        grads = {"out_W": g.gW, "out_b": g.gb}
        for name in PARAMS:
            G = o.clamp(grads[name], -G_CLAMP, G_CLAMP)
            acc = self.acc[name]
            div = math.isqrt(g.n * N_REF) << self.R[name]
            step = (G * self.r[name]) // div                                 # |G * r| < 2**62
            decay = ((self.acc0[name] - acc) * self.d[name]) >> D_BITS        # < 2**62
            lim = (W_MAX if name == "out_W" else B_MAX) << ACC
            acc = o.clamp(acc - step + decay, -lim, lim)
            self.acc[name] = acc
        self.net.p["out_W"] = _f64(o, self.acc["out_W"] >> ACC)
        self.net.p["out_b"] = self.acc["out_b"] >> ACC
        self.updates += 1
        g.reset()


def multipliers(name: str, q: dict, s: DynEvalSettings):
    """(r, R, d): integer step multipliers r / 2**R and decay multipliers d / 2**20 per weight.

    Real step on the accumulator (scale 2**(p_bits + ACC)) per unit of integer gradient mean
    (scale 2**g_bits): m = lr * 2**(p_bits + ACC - g_bits) / (MS + eps)."""
    p_bits, g_bits = _grad_bits(name, q)
    ms = np.asarray(q[f"de.ms.{name}"], dtype=np.int64)
    ms_f = ms.astype(np.float64) * 2.0 ** -int(q[f"de.ms_exp.{name}"])
    m = s.lr * 2.0 ** (p_bits + ACC - g_bits) / (ms_f + s.eps)
    top = float(m.max()) if m.size else 0.0
    R = max(0, R_MAX_BITS - 1 - (math.frexp(top)[1] if top > 0 else 0))
    r = np.minimum(np.round(m * 2.0 ** R), (1 << R_MAX_BITS) - 1).astype(np.int64)
    total = int(ms.sum())                                    # exact: < 2**30 * 2**17
    if total > 0 and s.decay > 0:
        decrate = np.minimum(ms.astype(np.float64) * ms.size / total, 1.0 / s.decay)
    else:
        decrate = np.ones(ms.shape)
    d = np.round(s.decay * decrate * (1 << D_BITS)).astype(np.int64)
    return r, R, d


# ------------------------------------------------------------------ statistics (export time)

def measure_stats(cfg: dict, q: dict, data: bytes, streams: int = 16, segment: int = 32) -> dict:
    """MS of the segment-mean gradients of the exact model on `data` (training text), as the
    integer tensors a model file stores: {"de.ms.out_W", "de.ms_exp.out_W", ...}."""
    net = exact.ExactFSRNN(cfg, q)
    L = len(data) // streams
    if L < segment + 1:
        raise ValueError("not enough data for the dynamic-evaluation statistics")
    x = np.frombuffer(data[: L * streams], dtype=np.uint8).reshape(streams, L).astype(np.int64)
    grad = _Grad(net.ops, cfg["fast"])
    sq = {name: None for name in PARAMS}
    count = 0
    w = net.start(streams)
    for t in range(L):
        grad.add(net.hF, w, x[:, t])
        if grad.steps == segment:
            for name, G in (("out_W", grad.gW), ("out_b", grad.gb)):
                _, g_bits = _grad_bits(name, q)
                g = G.astype(np.float64) / (grad.n * 2.0 ** g_bits)
                sq[name] = g * g if sq[name] is None else sq[name] + g * g
            count += 1
            grad.reset()
        w = net.step(x[:, t])
    out = {}
    for name in PARAMS:
        ms = np.sqrt(sq[name] / count)
        e = MS_BITS - 1 - math.frexp(float(ms.max()))[1]
        out[f"de.ms.{name}"] = np.round(ms * 2.0 ** e).astype(np.int64)
        out[f"de.ms_exp.{name}"] = int(e)
    return out
