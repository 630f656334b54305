"""Float vs exact (integer) FS-LSTM cross-entropy on given files, same streams and protocol.

    python bench/scripts/float_vs_exact.py CKPT MODEL.pt FILE... [--streams N] [--bytes N]

CKPT is the float training file the model was exported from; MODEL.pt the exported integer model.
Files may be plain files or .tar.xz shards (read as in training). Prints bits per byte of both and
the relative difference, and the exact path's CPU speed.
"""
import argparse
import time

from nncompress.tools.export import exact_bits, float_bits, load_float
from nncompress.predictors.fslstm.predictor import read_exact
from nncompress.tools.train import read_data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("model")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--bytes", type=int, default=0, help="use at most this many bytes per file")
    ap.add_argument("--offset", type=int, default=0)
    a = ap.parse_args()
    cfg_f, sd = load_float(a.ckpt)
    cfg_q, q = read_exact(a.model)
    print(f"{'file':32s} {'bytes':>9s} {'float':>7s} {'exact':>7s} {'diff':>7s} {'KB/s':>6s}")
    for f in a.files:
        data, _ = read_data([f])
        data = data[a.offset:]
        if a.bytes:
            data = data[: a.bytes]
        n = (len(data) // a.streams) * a.streams
        fb = float_bits(cfg_f, sd, data[:n], a.streams) / n
        t = time.time()
        eb, sec = exact_bits(cfg_q, q, data[:n], a.streams)
        eb /= n
        print(f"{f.split('/')[-1]:32s} {n:9d} {fb:7.4f} {eb:7.4f} {100 * (eb - fb) / fb:+6.2f}% "
              f"{n / sec / 1000:6.1f}", flush=True)


if __name__ == "__main__":
    main()
