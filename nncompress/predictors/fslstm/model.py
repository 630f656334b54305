"""Fast-Slow LSTM (Mujika et al. 2017) in float PyTorch: all the model math, no I/O.

Spec: docs/fslstm.md; structure follows the official TensorFlow code (amujika/Fast-Slow-LSTM:
FSRNN.py, LNLSTM.py, aux.py) so that parameter counts match the paper. One time step:

    hF1 = F1(state = hFk_{t-1}, input = x_t)       only F1 sees the input byte
    hS  = S (state = hS_{t-1},  input = hF1)
    hF2 = F2(state = hF1,       input = hS)        only F2 sees the slow cell
    hFi = Fi(state = hF(i-1),   input = 0)         3 <= i <= k (a zero vector of width 1)
    logits = W hFk + b

The fast cells have their own weights but pass one (h, c) state along. Dimensions in comments:
B batch, T time, E embed, F fast units, S slow units, V vocab.

This float model is for training; the coder uses an exact integer form derived from its weights.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT = "nncompress-fslstm"  # the "format" field of a saved model file
VERSION = 1


@dataclass
class FSConfig:
    vocab: int = 256
    embed: int = 128
    fast: int = 700        # units of every fast cell
    slow: int = 400        # units of the slow cell
    k: int = 2             # number of fast cells, >= 2
    dropout: float = 0.35  # probability of zeroing (input, F1->S, S->F2, output)
    zoneout_c: float = 0.5   # probability of keeping the old c (per unit)
    zoneout_h: float = 0.1   # probability of keeping the old h
    bptt: int = 150
    batch: int = 128
    lr: float = 0.002
    ln_eps: float = 1e-3
    forget_bias: float = 1.0

    def __post_init__(self):
        if self.k < 2:
            raise ValueError(f"FS-RNN needs k >= 2 fast cells, got k={self.k}")
        for name in ("vocab", "embed", "fast", "slow", "bptt", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"FSConfig.{name} must be >= 1")
        for name in ("dropout", "zoneout_c", "zoneout_h"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"FSConfig.{name} must be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FSConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown FSConfig fields: {sorted(unknown)}")
        return cls(**d)  # missing fields take the defaults (older files)


def _paper(fast, slow, embed, k, bptt, lr, dropout, zc, zh):
    return FSConfig(embed=embed, fast=fast, slow=slow, k=k, bptt=bptt, batch=128, lr=lr,
                    dropout=dropout, zoneout_c=zc, zoneout_h=zh)


# The paper's configurations (fsrnn.md table), here byte-level (vocab 256), plus shipping sizes.
CONFIGS: dict[str, FSConfig] = {
    "ptb-fs-lstm-2": _paper(700, 400, 128, 2, 150, 0.002, 0.35, 0.5, 0.1),
    "ptb-fs-lstm-4": _paper(500, 400, 128, 4, 150, 0.002, 0.35, 0.5, 0.1),
    "enwik8-fs-lstm-2": _paper(900, 1500, 256, 2, 150, 0.001, 0.2, 0.3, 0.05),
    "enwik8-fs-lstm-4": _paper(730, 1500, 256, 4, 150, 0.001, 0.2, 0.3, 0.05),
    "enwik8-large-fs-lstm-4": _paper(1200, 1500, 256, 4, 100, 0.001, 0.25, 0.3, 0.05),
    # tests only
    "tiny": FSConfig(embed=16, fast=32, slow=32, k=2, bptt=32, batch=8, lr=0.003,
                     dropout=0.0, zoneout_c=0.3, zoneout_h=0.05),
    # ~0.39M parameters: trains on one CPU core in about an hour
    # (sees a fraction of an epoch in that time, so no dropout; zoneout as for enwik8)
    "small": FSConfig(embed=32, fast=128, slow=128, k=2, bptt=100, batch=64, lr=0.002,
                      dropout=0.0, zoneout_c=0.3, zoneout_h=0.05),
    # ~1.5M parameters: the bf16 CPU run (bfloat16 autocast, one core, ~12 KB/s). A large batch
    # keeps the AMX products busy; no dropout or zoneout, as a run sees each byte a few times at
    # most and the elementwise zoneout masks cost a fifth of the step
    "medium": FSConfig(embed=64, fast=256, slow=256, k=2, bptt=100, batch=256, lr=0.002,
                       dropout=0.0, zoneout_c=0.0, zoneout_h=0.0),
    # ~2.6M parameters, ~10 MiB as float32
    "base": FSConfig(embed=64, fast=320, slow=384, k=2, bptt=150, batch=64, lr=0.001,
                     dropout=0.15, zoneout_c=0.3, zoneout_h=0.05),
}


def get_config(name_or_cfg: "str | FSConfig") -> FSConfig:
    if isinstance(name_or_cfg, FSConfig):
        return name_or_cfg
    try:
        return FSConfig(**CONFIGS[name_or_cfg].to_dict())  # a copy
    except KeyError:
        raise ValueError(f"unknown config {name_or_cfg!r}; known: {', '.join(CONFIGS)}") from None


def _orthogonal_(w: torch.Tensor) -> torch.Tensor:
    # like aux.orthogonal: orthonormal rows or columns, whichever the shape allows; meta tensors
    # (parameter counting) skip the QR
    return w if w.is_meta else nn.init.orthogonal_(w)


class LNLSTMCell(nn.Module):
    """Layer-normalised LSTM with zoneout (official LNLSTM.py + aux.py).

    z = [x; h] W + b, split i, j, f, o; each gate block layer-normalised on its own with its own
    gain/bias; c' = c*sig(f + forget_bias) + sig(i)*tanh(j); h' = tanh(LN(c'))*sig(o).
    zoneout_h/c are the probabilities of keeping the old value of each unit.
    """

    def __init__(self, n_in: int, n_units: int, zoneout_c: float, zoneout_h: float,
                 ln_eps: float = 1e-3, forget_bias: float = 1.0, device=None):
        super().__init__()
        self.n_in, self.n = n_in, n_units
        self.zoneout_c, self.zoneout_h = zoneout_c, zoneout_h
        self.ln_eps, self.forget_bias = ln_eps, forget_bias
        n4 = 4 * n_units
        self.W = nn.Parameter(torch.empty(n_in + n_units, n4, device=device))  # rows: [x; h]
        self.b = nn.Parameter(torch.zeros(n4, device=device))
        self.ln_gain = nn.Parameter(torch.ones(n4, device=device))    # LN of the 4 gate blocks
        self.ln_bias = nn.Parameter(torch.zeros(n4, device=device))
        self.lnc_gain = nn.Parameter(torch.ones(n_units, device=device))  # LN of c'
        self.lnc_bias = nn.Parameter(torch.zeros(n_units, device=device))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        # W_xh and W_hh are separate orthogonal matrices in the official code
        _orthogonal_(self.W[: self.n_in])
        _orthogonal_(self.W[self.n_in:])
        self.b.zero_()
        self.ln_gain.fill_(1.0)
        self.ln_bias.zero_()
        self.lnc_gain.fill_(1.0)
        self.lnc_bias.zero_()

    def gates_x(self, x: torch.Tensor) -> torch.Tensor:
        # input part of z for many steps at once: (..., n_in) -> (..., 4n), bias included
        return torch.addmm(self.b, x.reshape(-1, self.n_in), self.W[: self.n_in]).view(
            *x.shape[:-1], 4 * self.n)

    def forward(self, zx: torch.Tensor | None, h: torch.Tensor, c: torch.Tensor):
        """zx: (B, 4n) input part x W_x + b from gates_x, or None for the zero input of F3..Fk.
        h, c: (B, n). Returns new (h, c)."""
        n = self.n
        if zx is None:
            z = torch.addmm(self.b, h, self.W[self.n_in:])      # (B, 4n); the 0-input adds 0
        else:
            z = torch.addmm(zx, h, self.W[self.n_in:])          # (B, 4n)
        B = z.shape[0]
        z = F.layer_norm(z.view(B, 4, n), (n,), eps=self.ln_eps).view(B, 4 * n)
        z = z * self.ln_gain + self.ln_bias
        i, j, f, o = z.chunk(4, dim=1)                          # 4 x (B, n)
        c_new = c * torch.sigmoid(f + self.forget_bias) + torch.sigmoid(i) * torch.tanh(j)
        h_new = torch.tanh(F.layer_norm(c_new, (n,), self.lnc_gain, self.lnc_bias,
                                        self.ln_eps)) * torch.sigmoid(o)
        return self._zoneout(h, h_new, self.zoneout_h), self._zoneout(c, c_new, self.zoneout_c)

    def _zoneout(self, old, new, p_keep_old):
        if p_keep_old == 0.0:
            return new
        if self.training:
            keep = torch.rand_like(new) < p_keep_old            # per-unit Bernoulli mask
            return torch.where(keep, old, new)
        # evaluation: the expected value of the mask, part of the model at inference
        return p_keep_old * old + (1.0 - p_keep_old) * new


class FSRNN(nn.Module):
    """FS-RNN language model over bytes: embedding, k fast LN-LSTM cells, one slow, softmax."""

    def __init__(self, cfg: FSConfig, device=None):
        super().__init__()
        self.cfg = cfg
        E, Fn, Sn = cfg.embed, cfg.fast, cfg.slow
        cell = lambda n_in, n: LNLSTMCell(n_in, n, cfg.zoneout_c, cfg.zoneout_h, cfg.ln_eps,
                                          cfg.forget_bias, device=device)
        self.embedding = nn.Parameter(torch.empty(cfg.vocab, E, device=device))  # (V, E)
        # F1 gets the byte, F2 the slow output, F3..Fk a zero vector of width 1 (as in FSRNN.py,
        # which keeps a 1-row W_xh for them: kept so that parameter counts match the paper)
        self.fast = nn.ModuleList([cell(E, Fn), cell(Sn, Fn)] +
                                  [cell(1, Fn) for _ in range(cfg.k - 2)])
        self.slow = cell(Fn, Sn)
        self.out_W = nn.Parameter(torch.empty(Fn, cfg.vocab, device=device))  # (F, V)
        self.out_b = nn.Parameter(torch.zeros(cfg.vocab, device=device))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        _orthogonal_(self.embedding)
        _orthogonal_(self.out_W)
        self.out_b.zero_()
        for m in [*self.fast, self.slow]:
            m.reset_parameters()

    def init_state(self, B: int, device=None, dtype=torch.float32):
        device = device if device is not None else self.out_W.device
        zf = lambda n: torch.zeros(B, n, device=device, dtype=dtype)
        return (zf(self.cfg.fast), zf(self.cfg.fast), zf(self.cfg.slow), zf(self.cfg.slow))

    def _drop(self, x):
        return F.dropout(x, self.cfg.dropout, self.training) if self.cfg.dropout > 0 else x

    def forward(self, x: torch.Tensor, state=None):
        """x: (B, T) long bytes; state: (hF, cF, hS, cS) from init_state or a previous call.
        Returns logits (B, T, V) for the byte after each input, and the new state."""
        B, T = x.shape
        hF, cF, hS, cS = self.init_state(B, x.device) if state is None else state
        F1, F2, rest = self.fast[0], self.fast[1], self.fast[2:]
        emb = self._drop(self.embedding[x])                      # (B, T, E)
        # F1's input part for all steps at once; unbind (not zx1[:, t]) so that backward gathers
        # the T gradients with one stack instead of T full-size zero tensors
        zx1 = F1.gates_x(emb.transpose(0, 1)).unbind(0)          # T x (B, 4F)
        outs = []
        for t in range(T):
            hF, cF = F1(zx1[t], hF, cF)                          # (B, F)
            hS, cS = self.slow(self.slow.gates_x(self._drop(hF)), hS, cS)   # (B, S)
            hF, cF = F2(F2.gates_x(self._drop(hS)), hF, cF)      # (B, F)
            for cell in rest:
                hF, cF = cell(None, hF, cF)
            outs.append(hF)
        y = self._drop(torch.stack(outs, 1))                     # (B, T, F)
        logits = torch.matmul(y, self.out_W) + self.out_b        # (B, T, V)
        return logits, (hF, cF, hS, cS)


def count_parameters(cfg: FSConfig) -> int:
    """Parameter count of the real module, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        m = FSRNN(cfg, device="meta")
    return sum(p.numel() for p in m.parameters())


def bits_per_byte(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in bits: logits (..., V), targets (...) long."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                           targets.reshape(-1)) / math.log(2)
