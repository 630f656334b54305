"""Per-stage profile: microseconds per engine step of each non-neural stage, at 16, 64, 256 and
1024 streams, printed as a markdown table.

    python bench/scripts/stage_profile.py [--file PATH] [--streams 16,64,256,1024]
                                          [--stages ctx1,ctx2,match,cm,bmix,mix,gmix,quantize]
                                          [--steps 100] [--baseline DIR]

Every stage runs on real text (default: enwik6 from ../shared/corpora, or $NNCOMPRESS_SHARED)
cut into S contiguous streams as the engine cuts a file, one byte per stream per step. A stage
that wraps a predictor (match, cm, bmix, mix, gmix) wraps stand-ins that hand back fixed tables (the
text's byte frequencies), so its figure is its own work only. ``quantize`` is coding.quantize on
ctx1-shaped weights (what the engine does to every step's weights). Warm-up steps (at least 30,
and 64 KiB of text over all streams, so that the tables are past their first page faults) come
first and are not timed (they include numba's compilation or cache load); then each timed step
is one perf_counter interval, and the table gives the median.

Each (stage, streams) cell runs in a fresh process. With ``--baseline DIR`` (a tree holding
another version of the package, for example `git archive COMMIT | tar -x -C DIR`), every cell
also runs with DIR first on the import path, alternating with the current tree cell by cell, and
the table gives both medians and their ratio (baseline / current).
Run it alone on an otherwise idle core with one thread (the script sets OMP_NUM_THREADS=1 and
NUMBA_NUM_THREADS=1 for its children).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("NNCOMPRESS_SHARED", ROOT.parent / "shared"))
STAGES = ["ctx1", "ctx2", "match", "cm", "bmix", "mix", "gmix", "quantize"]


class _Fixed:
    """A stand-in predictor: the same table for every stream at every step."""

    def __init__(self, table, name):
        import numpy as np
        from nncompress.predictors.base import PredictorIdentity
        self.table = np.ascontiguousarray(table, dtype=np.int64)
        self.identity = PredictorIdentity(name)

    def start(self, n):
        self.full = self.table[None, :].repeat(n, axis=0)
        return self.full

    def step(self, symbols):
        return self.full[:len(symbols)]


def _child(stage: str, S: int, steps: int, path: str) -> dict:
    import numpy as np
    from nncompress.format import coding
    from nncompress.predictors.context import ContextModel

    raw = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8).astype(np.int64)
    warm = max(30, -(-65536 // S))
    span = warm + steps
    if S * span > len(raw):
        raise SystemExit(f"{path} is too short for {S} streams x {span} steps")
    block = raw[:S * span].reshape(S, span)     # stream s: span contiguous bytes
    freq = np.bincount(raw, minlength=256) + 1
    if stage in ("ctx1", "ctx2"):
        pred = ContextModel(stage)
    elif stage == "match":
        from nncompress.predictors.match import MatchStage
        pred = MatchStage(_Fixed(freq, "order0"))
    elif stage == "cm":
        from nncompress.predictors.cm import CMStage
        pred = CMStage(_Fixed(freq, "order0"))
    elif stage in ("mix", "gmix"):
        from nncompress.predictors.mix import GeoMixture, Mixture
        cls = Mixture if stage == "mix" else GeoMixture
        pred = cls([_Fixed(freq, "order0"), _Fixed(freq * freq, "ctx1")])
    elif stage == "quantize":
        ctx = ContextModel("ctx1")
        w = ctx.start(S)
        for t in range(warm):
            w = ctx.step(block[:, t])
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            coding.quantize(w)
            times.append(time.perf_counter() - t0)
        return {"median_us": 1e6 * float(np.median(times)), "steps": steps}
    elif stage == "bmix":       # codes each step's bytes itself (the engine's encode_step)
        from nncompress.predictors.bmix import BMixStage
        pred = BMixStage(_Fixed(freq, "order0"))
        pred.layout([span] * S)
        w = pred.start(S)
        pred.begin_segment()
        times = []
        for t in range(span):
            sym = block[:, t]
            t0 = time.perf_counter()
            pred.encode_step(t, sym, w)
            w = pred.step(sym)
            if t >= warm:
                times.append(time.perf_counter() - t0)
        return {"median_us": 1e6 * float(np.median(times)), "steps": steps}
    else:
        raise SystemExit(f"unknown stage {stage}")
    pred.start(S)
    for t in range(warm):
        pred.step(block[:, t])
    times = []
    for t in range(warm, span):
        sym = block[:, t]
        t0 = time.perf_counter()
        pred.step(sym)
        times.append(time.perf_counter() - t0)
    return {"median_us": 1e6 * float(np.median(times)), "steps": steps}


def _run_cell(stage, S, steps, path, tree=None) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    if tree:
        env["PYTHONPATH"] = os.pathsep.join([str(tree)] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, __file__, "--child", stage, str(S), str(steps), str(path)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["median_us"]


def _fmt(us: float) -> str:
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        stage, S, steps, path = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        print(json.dumps(_child(stage, S, steps, path)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", type=Path, default=SHARED / "corpora" / "enwik" / "enwik6")
    ap.add_argument("--streams", default="16,64,256,1024")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--steps", type=int, default=100, help="timed steps per cell")
    ap.add_argument("--baseline", type=Path, help="tree of another version, run beside this one")
    args = ap.parse_args()
    streams = [int(s) for s in args.streams.split(",")]
    stages = args.stages.split(",")
    res, base = {}, {}
    for stage in stages:
        for S in streams:
            if args.baseline:
                base[stage, S] = _run_cell(stage, S, args.steps, args.file, args.baseline)
            res[stage, S] = _run_cell(stage, S, args.steps, args.file)
            print(f"{stage} {S}: {res[stage, S]:.1f} us" + (
                f" (baseline {base[stage, S]:.1f})" if args.baseline else ""), file=sys.stderr)
    print(f"Microseconds per step (median of {args.steps} steps), {args.file.name}, one thread"
          + (f"; baseline: {args.baseline}" if args.baseline else ""))
    print()
    head = [f"{S} streams" for S in streams]
    print("| stage | " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(streams))
    for stage in stages:
        if args.baseline:
            cells = [f"{_fmt(base[stage, S])} -> {_fmt(res[stage, S])} "
                     f"({base[stage, S] / res[stage, S]:.1f}x)" for S in streams]
        else:
            cells = [_fmt(res[stage, S]) for S in streams]
        print(f"| {stage} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
