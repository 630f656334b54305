"""Dynamic-evaluation learning rates of one model on held-out training text (trainpool shard 7),
ideal bits per byte under the exact tables through the real engine, one line per setting:

    python bench/scripts/de_tune.py MODEL_FILE [--data ../shared/trainpool/shard7.tar.xz]
        [--offset 4194304] [--bytes 262144] [--streams 64] [--out 3e-4,1e-3,3e-3,1e-2]
        [--full 1e-4,3e-4,1e-3,3e-3] [--segment 8]

The slice starts past the region the export check reads (2 MiB) and the first MiB training
evaluates on, so neither figure is tuned on.
"""
import argparse
import io
import json
import time

from nncompress import engine
from nncompress.predictors.fslstm import dyneval
from nncompress.predictors.fslstm.predictor import FSLSTMPredictor, read_exact
from nncompress.tools.export import read_val


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data", default="../shared/trainpool/shard7.tar.xz")
    ap.add_argument("--offset", type=int, default=4 << 20)
    ap.add_argument("--bytes", type=int, default=1 << 18)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--out", default="3e-4,1e-3,3e-3,1e-2")
    ap.add_argument("--full", default="1e-4,3e-4,1e-3,3e-3")
    ap.add_argument("--segment", type=int, default=8)
    a = ap.parse_args()
    cfg, q = read_exact(a.model)
    data, off = read_val(a.data, a.bytes, a.offset)
    n = len(data) // a.streams * a.streams
    runs = [None] + [("out", float(x)) for x in a.out.split(",") if x] \
        + [("full", float(x)) for x in a.full.split(",") if x]
    for r in runs:
        de = None if r is None else dyneval.DynEvalSettings(scope=r[0], lr=r[1], segment=a.segment)
        p = FSLSTMPredictor("tune", bytes(32), cfg, q, device="cpu", de=de)
        t = time.time()
        st = engine.measure(io.BytesIO(data[:n]), n, p, a.streams)
        print(json.dumps({"scope": "static" if r is None else r[0], "lr": None if r is None else r[1],
                          "segment": a.segment, "bpb": round(st.ideal_bits / n, 5),
                          "kBps": round(n / (time.time() - t) / 1000, 2), "offset": off,
                          "bytes": n, "streams": a.streams}), flush=True)


if __name__ == "__main__":
    main()
