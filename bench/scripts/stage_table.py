"""Final stages compared on trainpool shard 7 samples (the only text the cm stage was tuned on):
ideal bits per byte of fslstm-small-v3+ctx2 under each final stage.

    python bench/scripts/stage_table.py [--shard ../shared/trainpool/shard7.tar.xz]
                                        [--stages match,cm] [--cache runs/stage_cache]

The FS-LSTM with full dynamic evaluation is the slow part and does not depend on the stage, so its
tables are computed once per sample (at the default stream count) and cached as .npz; every stage
then replays them beside a fresh ctx2, the geometric mixer and the stage itself. The samples are
cut from the shard by fixed rules (SAMPLES below), so the table is reproducible.
"""
import argparse
import io
import re
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from nncompress import engine
from nncompress.predictors import spec as specs
from nncompress.predictors.base import PredictorIdentity
from nncompress.predictors.cm import CMStage
from nncompress.predictors.context import ContextModel
from nncompress.predictors.match import MatchStage
from nncompress.predictors.mix import GeoMixture, normalise

# name: (folder in the shard, bytes, bytes skipped at the start of the folder's files in order)
SAMPLES = {
    "c": ("code-curl-c", 100000, 0),
    "man": ("docs-man-pages", 80000, 0),
    "pep": ("docs-python-peps", 100000, 0),
    "rust": ("docs-rust-book", 80000, 0),
    "reuters": ("news-reuters21578", 100000, 200000),
    "wikixml": ("wiki-xml-wikidump-rs", 150000, 100000),
    "html": ("wiki-html-wtq", 100000, 50000),
    "book": ("books-100-english-novels", 150000, 300000),
    "spaced": ("news-bbc", 100000, 0),     # PTB-style: characters separated by spaces
}
STAGES = {
    "match": lambda inner: MatchStage(inner),
    "cm": lambda inner: CMStage(inner),
}


def _spaced(raw: bytes) -> bytes:
    s = re.sub(r"[^a-z0-9 \n'.,-]", " ", raw.decode("utf8", "ignore").lower())
    lines = [" _ ".join(" ".join(w) for w in line.split()) for line in s.split("\n") if line.split()]
    return ("\n".join(lines) + "\n").encode()


def samples(shard: Path) -> dict:
    out = {}
    with tarfile.open(shard) as t:
        members = sorted((m for m in t.getmembers() if m.isfile()), key=lambda m: m.name)
        for name, (folder, n, skip) in SAMPLES.items():
            data = b""
            files = [m for m in members if m.name.startswith(folder + "/")]
            for m in files[:40] if name == "spaced" else files:
                data += t.extractfile(m).read()
                if name != "spaced" and len(data) >= n + skip:
                    break
            out[name] = (_spaced(data) if name == "spaced" else data)[skip:skip + n]
    return out


class _Recorder:
    def __init__(self, inner):
        self.inner, self.identity, self.tabs = inner, inner.identity, []
        self.min_stream_len, self.max_streams = inner.min_stream_len, inner.max_streams

    def start(self, n):
        w = self.inner.start(n)
        self.tabs.append(normalise(w).astype(np.int32))
        return w

    def step(self, s):
        w = self.inner.step(s)
        self.tabs.append(normalise(w).astype(np.int32))
        return w


class _Replay:
    """The recorded tables of a member, step by step (the same streams and steps only)."""

    def __init__(self, path: Path, identity):
        z = np.load(path)
        self.flat, self.offs = z["flat"], np.concatenate([[0], np.cumsum(z["counts"])])
        self.identity = identity
        self.min_stream_len, self.max_streams = 1 << 12, 1024

    def start(self, n):
        self.t = 0
        return self.flat[self.offs[0]:self.offs[1]].astype(np.int64)

    def step(self, s):
        self.t += 1
        w = self.flat[self.offs[self.t]:self.offs[self.t + 1]].astype(np.int64)
        if len(w) != len(s):
            raise ValueError("replayed tables do not match this input")
        return w


def _bpb(data: bytes, pred, streams: int) -> float:
    return engine.measure(io.BytesIO(data), len(data), pred, streams).ideal_bits / len(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shard", default="../shared/trainpool/shard7.tar.xz")
    ap.add_argument("--stages", default="match,cm")
    ap.add_argument("--cache", default="runs/stage_cache")
    a = ap.parse_args()
    shard = Path(a.shard)
    if not shard.is_file():
        sys.exit(f"{shard} not found (the trainpool's validation shard)")
    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    stages = a.stages.split(",")
    print("| sample | bytes | streams | " + " | ".join(stages) + " | change |")
    print("|---|---:|---:|" + "---:|" * len(stages) + "---:|")
    for name, data in samples(shard).items():
        fs = specs.build_predictor("fslstm-small-v3", device="cpu")
        streams = engine.choose_streams(len(data), 1 << 12, 64)
        path = cache / f"{name}-{fs.identity.model_sha256.hex()[:12]}-{len(data)}-{streams}.npz"
        if not path.is_file():
            t0 = time.perf_counter()
            rec = _Recorder(fs)
            engine.measure(io.BytesIO(data), len(data), rec, streams)
            np.savez(path, flat=np.concatenate(rec.tabs), counts=[len(x) for x in rec.tabs])
            print(f"  (recorded {name}: {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        ident = PredictorIdentity("fslstm-small-v3", fs.identity.model_sha256, fs.identity.settings)
        res = [_bpb(data, STAGES[s](GeoMixture([_Replay(path, ident), ContextModel("ctx2")])), streams)
               for s in stages]
        print(f"| {name} | {len(data):,} | {streams} | " + " | ".join(f"{r:.4f}" for r in res)
              + f" | {100 * (res[-1] / res[0] - 1):+.1f}% |", flush=True)


if __name__ == "__main__":
    main()
