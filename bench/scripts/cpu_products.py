"""The exact int8 products this CPU has (exact.cpu_products: torch._int_mm, the AVX2 kernel of
x86mm.py, the float product), one thread, at the default model's shapes, and the int8 cell
step in int64 (fused.cell_i8) against integer-valued float64 (fused.cell_i8f).

    python bench/scripts/cpu_products.py [--rounds 7]

Prints one Markdown table of median microseconds per product and GMAC/s (each checked against
an int64 product), then the cell kernels' median time per call on a random state of the
shipped model's size. Interleaved rounds; the machine's other load shows in the spread."""
import argparse
import time

import numpy as np
import torch

from nncompress.predictors.fslstm import exact, fused


def _median_us(fn, rounds):
    fn()
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e6


def products(rounds):
    prods = exact.cpu_products()
    rng = np.random.default_rng(0)
    print("| streams | K x N | " + " | ".join(f"{p} us (GMAC/s)" for p in prods) + " |")
    print("|---:|---|" + "---:|" * len(prods))
    for S in (16, 64, 98, 256, 1024):
        for K, N in ((256, 1024), (256, 256)):
            a = torch.from_numpy(rng.integers(-127, 128, (S, K)).astype(np.int8))
            w = torch.from_numpy(rng.integers(-127, 128, (K, N)).astype(np.int8))
            want = a.long() @ w.long()
            cells = []
            for name, fn in prods.items():
                if name == "int_mm" and "avx2" in prods and S * K * N > 1 << 24:
                    cells.append("(slow here)")     # a plain loop where the kernel runs
                    continue
                assert torch.equal(fn(a, w).long(), want), name
                us = _median_us(lambda: fn(a, w), rounds)
                cells.append(f"{us:,.0f} ({S * K * N / us / 1e3:.1f})")
            print(f"| {S} | {K} x {N} | " + " | ".join(cells) + " |")


def cells(rounds, S=96, n=256):
    rng = np.random.default_rng(1)
    n4 = 4 * n
    acc = rng.integers(-(1 << 21), 1 << 21, (S, n4)).astype(np.int32)
    m = rng.integers(1 << 12, 1 << 14, n4).astype(np.int64)
    r = 11
    add = rng.integers(-(1 << 20), 1 << 20, (S, n4)).astype(np.int64)
    idx = np.arange(S, dtype=np.int64)
    h = rng.integers(-(1 << 14), 1 << 14, (S, n)).astype(np.int64)
    cs = rng.integers(-(1 << 20), 1 << 20, (S, n)).astype(np.int64)
    gain = rng.integers(1 << 15, 1 << 17, n4).astype(np.int64)
    bias = rng.integers(-(1 << 16), 1 << 16, n4).astype(np.int64)
    lg = rng.integers(1 << 15, 1 << 17, n).astype(np.int64)
    lb = rng.integers(-(1 << 16), 1 << 16, n).astype(np.int64)
    luts = exact.build_luts()
    ls, lt = luts["lut_sigmoid"], luts["lut_tanh"]
    fb, eps, kh, kc = 65536, 4295, 0, 0
    ho, co, ho2, co2 = (np.empty((S, n), np.int64) for _ in range(4))
    t1 = (np.empty((1, 4, 1), np.int64), np.empty((1, 4), np.int64)) + tuple(
        np.empty((1, 1), np.int64) for _ in range(4)) + (np.empty(1, np.int64),) + tuple(
        np.empty((1, 1), np.int64) for _ in range(2))
    old = lambda: fused.cell_i8(acc, m, r, add, idx, h, cs, gain, bias, lg, lb, ls, lt, fb, eps,
                                kh, kc, ho, co, *t1, False)
    fbv = np.zeros(n4, np.int64)
    fbv[2 * n:3 * n] = fb
    args = (acc, m.astype(np.float64), 2.0 ** -r, add.astype(np.float64), idx, h, cs,
            gain.astype(np.float64), ((bias + fbv) << 16).astype(np.float64),
            lg.astype(np.float64), (lb << 16).astype(np.float64),
            np.concatenate([ls, lt]).astype(np.int32), eps, kh, kc, ho2, co2)
    new = lambda: fused.cell_i8f(*args)
    old(), new()
    assert np.array_equal(ho, ho2) and np.array_equal(co, co2)
    times = {"cell_i8 (int64)": [], "cell_i8f (float64)": []}
    for _ in range(rounds):
        for k, f in zip(times, (old, new)):
            times[k].append(_median_us(f, 5))
    print()
    print(f"cell kernels, {S} streams, n = {n}: " + ", ".join(
        f"{k} {np.median(v):,.0f} us" for k, v in times.items()) + " (the same integers)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"chosen here: {exact._choose_cpu_product()}")
    products(args.rounds)
    cells(args.rounds)


if __name__ == "__main__":
    main()
