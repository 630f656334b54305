"""Exact dynamic evaluation of the FS-LSTM (Krause et al., integer arithmetic).

Two scopes. "out" (arithmetic tag de-out-v1, the first one shipped) adapts the output layer only;
the rest of this docstring describes it. "full" (de-full-v1) backpropagates through the whole
segment (truncated BPTT through every cell, backward.py) and adapts every weight matrix, the
biases and fast.0's input table with the same update rule; its gradients and accumulators follow
the same fixed-point rules (backward.py gives the bounds).

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

Everything the decoder must repeat is integer (docs/exactness.md):
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

from .. import schema
from . import backward, exact

ARITH = "de-out-v1"      # the output-layer update arithmetic; a change needs a new tag
ARITH_FULL = "de-full-v1"  # the full backward pass and update (scope "full")
SCOPES = {"out": ARITH, "full": ARITH_FULL}
# What a header's "dyneval" object must hold (full scope: segment at most backward.MAX_SEGMENT,
# checked by the predictor); the arithmetic tag is checked when the settings are built.
SCHEMA = schema.Schema({
    "arith": schema.Setting("str"),
    "segment": schema.integer(1, 1 << 16),
    "lr": schema.number(0.0, 1.0),
    "decay": schema.number(0.0, 1.0),
    "eps": schema.number(0.0, 1e3, lo_open=True),
})
# learning rates chosen on trainpool shard 7 (fslstm-small-v2, 256 KB at offset 3 MB, 64 streams:
# full 1e-4 1.8931, 2e-4 1.8820, 3e-4 1.8739, 4.5e-4 1.8735 bpb; out 1e-3 1.9604)
DEFAULT_LR = {"out": 1e-3, "full": 3e-4}
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
    scope: str = "out"      # "out": output layer only; "full": every weight matrix (BPTT)

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"dynamic evaluation scope must be one of {sorted(SCOPES)}, "
                             f"not {self.scope!r}")
        if self.scope == "full" and isinstance(self.segment, int) \
                and self.segment > backward.MAX_SEGMENT:
            raise ValueError(f"full dynamic evaluation updates at least every "
                             f"{backward.MAX_SEGMENT} steps, not {self.segment}")
        if not (isinstance(self.segment, int) and 1 <= self.segment <= 1 << 16):
            raise ValueError(f"dynamic evaluation segment must be 1..65536 steps, not {self.segment}")
        for k in ("lr", "decay", "eps"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"dynamic evaluation {k} must be a finite number >= 0, not {v!r}")
        if self.decay > 1 or self.eps <= 0:
            raise ValueError("dynamic evaluation needs 0 <= decay <= 1 and eps > 0")

    def to_json(self) -> dict:
        """The header form: the arithmetic tag stands for the scope."""
        return {"arith": SCOPES[self.scope], **{k: (float(v) if k != "segment" else v)
                                                for k, v in asdict(self).items() if k != "scope"}}

    @classmethod
    def from_json(cls, d: dict) -> "DynEvalSettings":
        scope = {v: k for k, v in SCOPES.items()}.get(d.get("arith"))
        if scope is None:
            raise ValueError(f"dynamic evaluation arithmetic {d.get('arith')!r} is not one of "
                             f"{sorted(SCOPES.values())}")
        return cls(int(d["segment"]), float(d["lr"]), float(d["decay"]), float(d["eps"]), scope)


def params_for(cfg: dict, scope: str) -> list[str]:
    return list(PARAMS) if scope == "out" else backward.full_params(cfg)


def has_stats(cfg: dict, q: dict, scope: str) -> bool:
    return all(f"de.ms.{name}" in q for name in params_for(cfg, scope))


_grad_bits = backward.grad_bits


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
        _init_params(self, q, settings, list(PARAMS))
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
        g = self.grad
        _apply(self, {"out_W": g.gW, "out_b": g.gb}, g.n)
        g.reset()


def _init_params(de, q: dict, settings: DynEvalSettings, params: list) -> None:
    """The adapted parameters' accumulators (trained values << ACC) and step multipliers."""
    o = de.ops
    de.params = params
    de.acc, de.acc0, de.r, de.R, de.d = {}, {}, {}, {}, {}
    for name in params:
        a0 = o.asarray(np.asarray(q[name], dtype=np.int64) << ACC)
        de.acc[name], de.acc0[name] = a0, a0
        r, R, d = multipliers(name, q, settings)
        de.r[name], de.R[name], de.d[name] = o.asarray(r), R, o.asarray(d)


def _apply(de, grads: dict, n: int) -> None:
    """One update of every adapted parameter from its segment gradient sum over n bytes."""
    o = de.ops
    for name in de.params:
        acc = de.acc[name]
        div = math.isqrt(n * N_REF) << de.R[name]
        lim = (W_MAX if backward.is_matrix(name) else B_MAX) << ACC
        if de.net._fused and div < (1 << 62):   # the same integers in one compiled pass
            from . import fused
            new = np.empty(acc.shape, dtype=np.int64)
            par = np.empty(acc.shape, np.float64 if backward.is_matrix(name) else np.int64)
            fused.de_update(np.ascontiguousarray(grads[name]).reshape(-1), acc.reshape(-1),
                            de.acc0[name].reshape(-1), de.r[name].reshape(-1),
                            de.d[name].reshape(-1), div, G_CLAMP, D_BITS, de.s.decay > 0, lim,
                            ACC, new.reshape(-1), par.reshape(-1))
            de.acc[name], de.net.p[name] = new, par
            continue
        G = o.clamp(grads[name], -G_CLAMP, G_CLAMP)
        step = (G * de.r[name]) // div                                 # |G * r| < 2**62
        if de.s.decay > 0:                                             # else d == 0: no term
            step = step - (((de.acc0[name] - acc) * de.d[name]) >> D_BITS)  # < 2**62
        acc = acc - step
        acc = o.clamp(acc, -lim, lim)
        de.acc[name] = acc
        de.net.p[name] = _f64(o, acc >> ACC) if backward.is_matrix(name) else acc >> ACC
    de.updates += 1


class FullDynEval:
    """Adapts every weight matrix of `net` (scope "full"): records each step's intermediates and
    backpropagates through the segment when it is complete. Same calls as OutputDynEval."""

    def __init__(self, net: exact.ExactFSRNN, q: dict, settings: DynEvalSettings):
        if not has_stats(net.cfg, q, "full"):
            raise ValueError("this model file has no statistics for full dynamic evaluation")
        self.net, self.s = net, settings
        self.ops = net.ops
        _init_params(self, q, settings, params_for(net.cfg, "full"))
        net.record = True
        self.grad = backward.SegmentGrads(net)
        self.h = self.w = self.tape = None
        self.updates = 0

    def predicted(self, w):
        backward.check_sizes(self.net.cfg, w.shape[0])
        self.h, self.w, self.tape = self.net.hF, w, self.net.tape

    def observe(self, symbols) -> None:
        a = symbols.shape[0]
        self.grad.add(error_q16(self.ops, self.w[:a], symbols), self.h, self.tape)
        if len(self.grad.entries) >= self.s.segment:
            _apply(self, self.grad.backward(), self.grad.n)
            self.grad.reset()


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

def measure_stats(cfg: dict, q: dict, data: bytes, streams: int = 16, segment: int = 32,
                  scope: str = "out") -> dict:
    """MS of the segment-mean gradients of the exact model on `data` (training text), as the
    integer tensors a model file stores: {"de.ms.out_W", "de.ms_exp.out_W", ...}; scope "full"
    measures every parameter that full dynamic evaluation adapts."""
    net = exact.ExactFSRNN(cfg, q)
    L = len(data) // streams
    if L < segment + 1:
        raise ValueError("not enough data for the dynamic-evaluation statistics")
    x = np.frombuffer(data[: L * streams], dtype=np.uint8).reshape(streams, L).astype(np.int64)
    names = params_for(cfg, scope)
    sq = {name: None for name in names}
    count = 0

    def add(grads: dict, n: int):
        for name in names:
            _, g_bits = _grad_bits(name, q)
            g = grads[name].astype(np.float64) / (n * 2.0 ** g_bits)
            sq[name] = g * g if sq[name] is None else sq[name] + g * g

    if scope == "full":
        net.record = True
        full = backward.SegmentGrads(net)
    grad = _Grad(net.ops, cfg["fast"])
    w = net.start(streams)
    for t in range(L):
        if scope == "full":
            full.add(error_q16(net.ops, w, x[:, t]), net.hF, net.tape)
            if len(full.entries) == segment:
                add(full.backward(), full.n)
                count += 1
                full.reset()
        else:
            grad.add(net.hF, w, x[:, t])
            if grad.steps == segment:
                add({"out_W": grad.gW, "out_b": grad.gb}, grad.n)
                count += 1
                grad.reset()
        w = net.step(x[:, t])
    out = {}
    for name in names:
        ms = np.sqrt(sq[name] / count)
        e = MS_BITS - 1 - math.frexp(float(ms.max()))[1]
        out[f"de.ms.{name}"] = np.round(ms * 2.0 ** e).astype(np.int64)
        out[f"de.ms_exp.{name}"] = int(e)
    return out
