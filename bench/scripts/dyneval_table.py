"""Static vs dynamic evaluation, single models vs the ensemble: ideal bits per byte (the code
length under the quantised tables the coder uses; container overhead excluded) and the
predictor's speed, for the files issue 5 names plus any extra files.

    python bench/scripts/dyneval_table.py [--model fslstm-small-v2] [EXTRA_FILE...]

Columns: ctx1; the FS-LSTM static and with dynamic evaluation; the FS-LSTM+ctx1 mix static and
with dynamic evaluation. Speeds are the engine's measure pass (prediction and table building,
no range coding) on this machine.
"""
import argparse
import time
from pathlib import Path

import nncompress
import nncompress_corpora as corpora

KEY = ["alice29.txt", "book1", "lcet10.txt", "enwik6"]


def bpb(data, model, de):
    t0 = time.perf_counter()
    b = nncompress.cross_entropy(data, model=model, device="cpu", dynamic_eval=de)
    return b, len(data) / (time.perf_counter() - t0) / 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fslstm-small-v2")
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    fs, mix = a.model, f"{a.model}+ctx1"
    files = [corpora.locate(n) for n in KEY] + [Path(p) for p in a.extra]
    print(f"| file | ctx1 | {fs} static | {fs} dyn-eval | dyn-eval gain | mix static | mix dyn-eval "
          "| mix vs best member | KB/s static / dyn-eval (FS-LSTM) | KB/s mix static / dyn-eval |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in files:
        d = f.read_bytes()
        c, _ = bpb(d, "ctx1", None)
        s, s_sp = bpb(d, fs, False)
        e, e_sp = bpb(d, fs, True)
        ms, ms_sp = bpb(d, mix, False)
        me, me_sp = bpb(d, mix, True)
        best = min(c, e)
        print(f"| {f.name} | {c:.3f} | {s:.3f} | {e:.3f} | {100 * (e / s - 1):+.1f}% | {ms:.3f} | "
              f"{me:.3f} | {100 * (me / best - 1):+.1f}% | {s_sp:.1f} / {e_sp:.1f} | "
              f"{ms_sp:.1f} / {me_sp:.1f} |", flush=True)


if __name__ == "__main__":
    main()
