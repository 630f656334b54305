"""Static vs dynamic evaluation (output layer only, and full), single models vs the ensemble, and
the match stage: ideal bits per byte (the code length under the quantised tables the coder uses;
container overhead excluded) and the predictor's speed, for the files issue 5 names plus any
extra files.

    python bench/scripts/dyneval_table.py [--model fslstm-small-v3] [--files a,b] [--mix-only] [EXTRA_FILE...]

Columns: ctx1; the FS-LSTM static, with output-layer and with full dynamic evaluation; the
FS-LSTM+ctx1 mix with full dynamic evaluation, and that mix with the match stage (the default). --mix-only measures only ctx1 and the two mix columns (the FS-LSTM's
own columns do not change when only the mixer does). Speeds
are the engine's measure pass (prediction and table building, no range coding) on this machine.
"""
import argparse
import time
from pathlib import Path

import nncompress
import nncompress_corpora as corpora

KEY = ["alice29.txt", "book1", "lcet10.txt", "enwik6"]
OUT, FULL = {"scope": "out"}, {"scope": "full"}


def bpb(data, model, de):
    t0 = time.perf_counter()
    b = nncompress.cross_entropy(data, model=model, device="cpu", dynamic_eval=de)
    return b, len(data) / (time.perf_counter() - t0) / 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fslstm-small-v3")
    ap.add_argument("--files", default=",".join(KEY), help="corpus files by name, comma-separated")
    ap.add_argument("--mix-only", action="store_true", help="only ctx1, mix and mix+match")
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    fs, mix = a.model, f"{a.model}+ctx1"
    names = [n for n in a.files.split(",") if n]
    files = [corpora.locate(n) for n in names] + [Path(p) for p in a.extra]
    if a.mix_only:
        print("| file | ctx1 | mix DE full | mix DE full +match | KB/s mix DE full / +match |")
        print("|---|---:|---:|---:|---:|")
        for f in files:
            d = f.read_bytes()
            c, _ = bpb(d, "ctx1", None)
            me, me_sp = bpb(d, mix, FULL)
            mm, mm_sp = bpb(d, mix + "+match", FULL)
            print(f"| {f.name} | {c:.3f} | {me:.3f} | {mm:.3f} | {me_sp:.1f} / {mm_sp:.1f} |", flush=True)
        return
    print(f"| file | ctx1 | {fs} static | DE out | DE full | DE full gain | "
          "mix DE full | mix vs best member | mix DE full +match | KB/s FS static / out / full "
          "| KB/s mix DE full / +match |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in files:
        d = f.read_bytes()
        c, _ = bpb(d, "ctx1", None)
        s, s_sp = bpb(d, fs, False)
        o, o_sp = bpb(d, fs, OUT)
        e, e_sp = bpb(d, fs, FULL)
        me, me_sp = bpb(d, mix, FULL)
        mm, mm_sp = bpb(d, mix + "+match", FULL)
        best = min(c, e)
        print(f"| {f.name} | {c:.3f} | {s:.3f} | {o:.3f} | {e:.3f} | {100 * (e / s - 1):+.1f}% | "
              f"{me:.3f} | {100 * (me / best - 1):+.1f}% | {mm:.3f} | "
              f"{s_sp:.1f} / {o_sp:.1f} / {e_sp:.1f} | {me_sp:.1f} / {mm_sp:.1f} |", flush=True)


if __name__ == "__main__":
    main()
