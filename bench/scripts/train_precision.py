"""Training throughput and validation curves: bfloat16 autocast against float32, side by side.

    python bench/scripts/train_precision.py [--config medium] [--steps 60] [--eval-every 15]

Three runs of the same training step as `nncompress train` (Adam, global-norm clip 1.0, truncated
BPTT with the state carried) on trainpool shard 0, one thread, interleaved step by step so that a
change in the machine's load hits all of them alike:

- fp32 at batch 64 (the setting `fslstm-small-v3` was trained with), for speed only;
- fp32 and bf16 (autocast, float32 master weights) at the config's batch, from the same initial
  weights and on the same batches, with the validation bits per byte on a fixed slice of shard 7
  (float32 evaluation) every --eval-every steps.

Prints markdown tables: training bytes per second (median over steps) and the two curves.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from nncompress.predictors.fslstm import FSRNN, get_config
from nncompress.tools.train import _val_slice, evaluate, read_data

POOL = Path(__file__).resolve().parents[2] / ".." / "shared" / "trainpool"


class Run:
    def __init__(self, model, cfg, data, amp):
        self.m, self.cfg, self.amp = model, cfg, amp
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        B, T = cfg.batch, cfg.bptt
        L = (len(data) - 1) // B
        self.idx = (torch.arange(B) * L)[:, None] + torch.arange(T + 1)
        self.data, self.pos, self.state = data, 0, model.init_state(B)
        self.times, self.curve = [], []

    def step(self):
        t0 = time.perf_counter()
        batch = self.data[self.idx + self.pos].long()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp):
            logits, state = self.m(batch[:, :-1], self.state)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.m.parameters(), 1.0)
        self.opt.step()
        self.state = tuple(s.detach().float() for s in state)
        self.pos += self.cfg.bptt
        self.times.append(time.perf_counter() - t0)

    def rate(self):
        return self.cfg.batch * self.cfg.bptt / statistics.median(self.times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="medium")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--eval-every", type=int, default=15)
    ap.add_argument("--val-bytes", type=int, default=1 << 18)
    ap.add_argument("--speed-steps", type=int, default=15,
                    help="steps of the float32 batch-64 run (speed only)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = get_config(a.config)
    raw, _ = read_data([POOL / "shard0.tar.xz"])
    vraw, _ = read_data([POOL / "shard7.tar.xz"])
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    vslice = _val_slice(torch.frombuffer(bytearray(vraw), dtype=torch.uint8), 32, a.val_bytes)
    torch.manual_seed(0)
    m = FSRNN(cfg)
    small = Run(FSRNN(replace(cfg, batch=64)), replace(cfg, batch=64), data, amp=False)
    f32 = Run(copy.deepcopy(m), cfg, data, amp=False)
    b16 = Run(copy.deepcopy(m), cfg, data, amp=True)
    for s in range(1, a.steps + 1):
        if s <= a.speed_steps:
            small.step()
        for r in (f32, b16):
            r.step()
            if s % a.eval_every == 0:
                r.curve.append((s, evaluate(r.m, vslice)))
    print(f"config {a.config}: {cfg.to_dict()}; one thread, torch {torch.__version__}; "
          f"runs interleaved step by step\n")
    print("| precision | batch | steps | train B/s (median) | vs fp32 batch 64 |")
    print("|---|---:|---:|---:|---:|")
    for name, r in (("fp32", small), ("fp32", f32), ("bf16", b16)):
        print(f"| {name} | {r.cfg.batch} | {len(r.times)} | {r.rate():,.0f} | "
              f"{r.rate() / small.rate():.2f}x |")
    print(f"\n| step | fp32 val bpb | bf16 val bpb | bf16 - fp32 |")
    print("|---:|---:|---:|---:|")
    for (s, f), (_, h) in zip(f32.curve, b16.curve):
        print(f"| {s} | {f:.4f} | {h:.4f} | {h - f:+.4f} ({(h / f - 1) * 100:+.2f}%) |")


if __name__ == "__main__":
    main()
