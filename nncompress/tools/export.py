"""Export: a trained float FS-LSTM checkpoint -> the integer model file the coder ships with.

    nncompress export runs/small/model.pt --name fslstm-small-v1 --val ../shared/trainpool/shard7.tar.xz

writes models/NAME.pt (weights only, integer tensors and lookup tables) and models/NAME.json (the
training record, the SHA-256 of the model file, and the float vs exact cross-entropy measured on
held-out text through the real engine).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import time
from pathlib import Path

import click
import numpy as np

from ..errors import NNCError
from ..predictors.fslstm import dyneval, exact
from ..predictors.fslstm.predictor import FSLSTMPredictor, save_exact


def load_float(path):
    """(cfg dict, numpy state dict) of a float model file written by training."""
    from .train import load_model
    m = load_model(path)
    return m.cfg.to_dict(), {k: v.detach().float().numpy() for k, v in m.state_dict().items()}


def float_bits(cfg: dict, sd: dict, data: bytes, n_streams: int) -> float:
    """Total bits of the float model on `data` cut into n_streams equal streams, with the same
    protocol as the coder: zero state, the first byte predicted from the output bias."""
    import torch
    from ..predictors.fslstm.model import FSConfig, FSRNN
    m = FSRNN(FSConfig.from_dict(cfg)).eval()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    L = len(data) // n_streams
    x = torch.tensor(np.frombuffer(data[: n_streams * L], dtype=np.uint8).astype(np.int64)).view(n_streams, L)
    with torch.no_grad():
        lp0 = torch.log_softmax(m.out_b.double(), -1)
        bits = -lp0[x[:, 0]].sum().item()
        state = None
        for t0 in range(0, L - 1, 256):
            t1 = min(L - 1, t0 + 256)
            logits, state = m(x[:, t0:t1], state)
            lp = torch.log_softmax(logits.double(), -1)
            bits -= lp.gather(-1, x[:, t0 + 1:t1 + 1, None]).sum().item()
    return bits / math.log(2)


def exact_bits(cfg: dict, q: dict, data: bytes, n_streams: int,
               de: "dyneval.DynEvalSettings | None" = None) -> tuple[float, float]:
    """(total bits under the quantised tables through the real engine, seconds); with `de`,
    under dynamic evaluation."""
    from .. import engine
    p = FSLSTMPredictor("export-check", bytes(32), cfg, q, device="cpu", de=de)
    L = len(data) // n_streams
    st = engine.measure(io.BytesIO(data[: n_streams * L]), n_streams * L, p, n_streams)
    return st.ideal_bits, st.seconds


# Training evaluates on the first MiB of its validation data (and drops the learning rate on it);
# the export check reads a later region of the same held-out shard.
VAL_SKIP = 2 << 20


def read_val(path: str, n: int, skip: int = VAL_SKIP) -> tuple[bytes, int]:
    """(n bytes of held-out text from offset `skip`, the offset used)."""
    from .train import read_data  # files, folders or .tar.xz shards
    data, _ = read_data([path])
    start = max(0, min(skip, len(data) - n))  # a short file: its last n bytes
    return data[start: start + n], start


# Dynamic-evaluation statistics: this much training text, from this offset, in these streams.
DE_STATS_SKIP = 1 << 20
DE_STATS_BYTES = 1 << 18
DE_STATS_STREAMS = 16
DE_STATS_SEGMENT = 32
# what a newly exported model recommends (its file's config["dyneval"]["settings"])
DEFAULT_DE = dyneval.DynEvalSettings(scope="full", lr=dyneval.DEFAULT_LR["full"])


def add_dyneval_stats(cfg: dict, q: dict, data_path: str) -> dict:
    """Measures the gradient statistics on training text (never the validation shard or the
    corpora) and adds them to q; returns the provenance recorded in config["dyneval"]."""
    from ..predictors.fslstm.predictor import _one_blas_thread
    data, offset = read_val(data_path, DE_STATS_BYTES, DE_STATS_SKIP)
    t0 = time.time()
    with _one_blas_thread()():
        q.update(dyneval.measure_stats(cfg, q, data, DE_STATS_STREAMS, DE_STATS_SEGMENT))
        q.update(dyneval.measure_stats(cfg, q, data, DE_STATS_STREAMS, DE_STATS_SEGMENT,
                                       scope="full"))
    return {"arith": [dyneval.ARITH, dyneval.ARITH_FULL], "data": str(data_path),
            "data_sha256": hashlib.sha256(data).hexdigest(), "offset": offset, "bytes": len(data),
            "streams": DE_STATS_STREAMS, "segment": DE_STATS_SEGMENT,
            "seconds": round(time.time() - t0, 1)}


def export(ckpt: str, name: str, out_dir: Path, val: str | None, val_bytes: int,
           n_streams: int = 16, de_data: str | None = None, arith: str = exact.ARITH_I16) -> dict:
    if arith not in exact.ARITHS:
        raise click.ClickException(f"unknown arithmetic {arith!r}")
    if arith != exact.ARITH_I16 and de_data:
        raise click.ClickException(f"{arith} models have no dynamic evaluation: drop --de-data")
    cfg, sd = load_float(ckpt)
    if arith == exact.ARITH_I8:
        q = exact.quantize_model_i8(cfg, sd)
        file_cfg = {**cfg, "arith": arith}
    else:                       # exact-v1 files carry no "arith" key (as every earlier one)
        q = exact.quantize_model(cfg, sd)
        file_cfg = dict(cfg)
    if de_data:
        file_cfg["dyneval"] = {"stats": add_dyneval_stats(cfg, q, de_data),
                               "settings": dataclasses.asdict(DEFAULT_DE)}
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / f"{name}.pt"
    if model_path.exists():
        raise click.ClickException(f"{model_path} exists: a released model is never changed; "
                                   "choose a new name")
    tmp_path = out_dir / f".{name}.pt.tmp"
    save_exact(tmp_path, file_cfg, q)
    sha = hashlib.sha256(tmp_path.read_bytes()).hexdigest()
    rec: dict = {"name": name, "sha256": sha, "arith": arith, "bytes": tmp_path.stat().st_size,
                 "config": file_cfg, "exported_from": str(ckpt),
                 "exported": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "export_host": platform.node()}
    train_rec = Path(ckpt).with_suffix(".json")
    if train_rec.is_file():
        rec["training"] = json.loads(train_rec.read_text())
    try:
        if val:
            rec["validation"] = _validate(file_cfg, sd, q, val, val_bytes, n_streams)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    (out_dir / f"{name}.json").write_text(json.dumps(rec, indent=2) + "\n")
    os.replace(tmp_path, model_path)
    return rec


def _validate(cfg, sd, q, val, val_bytes, n_streams) -> dict:
    """Float vs exact cross-entropy on held-out text, same streams and protocol for both
    (cfg: the model file's config)."""
    data, offset = read_val(val, val_bytes)
    n = (len(data) // n_streams) * n_streams
    if n < 2 * n_streams:
        raise click.ClickException(f"{val}: too little validation text")
    fb = float_bits({k: v for k, v in cfg.items() if k not in ("arith", "dyneval")}, sd, data,
                    n_streams)
    eb, sec = exact_bits(cfg, q, data, n_streams)
    out = {
        "data": str(val), "offset": offset, "bytes": n, "streams": n_streams,
        "float_bpb": fb / n, "exact_bpb": eb / n, "exact_vs_float": (eb - fb) / fb,
        "exact_cpu_kBps": n / sec / 1000, "exact_backend": "numpy (CPU)",
        "arith": exact.arith_of(cfg),
    }
    if dyneval.has_stats(cfg, q, "out"):
        db, dsec = exact_bits(cfg, q, data, n_streams, dyneval.DynEvalSettings())
        out.update({"dyneval_bpb": db / n, "dyneval_vs_static": (db - eb) / eb,
                    "dyneval_cpu_kBps": n / dsec / 1000})
    if dyneval.has_stats(cfg, q, "full"):
        db, dsec = exact_bits(cfg, q, data, n_streams, DEFAULT_DE)
        out.update({"dyneval_full_bpb": db / n, "dyneval_full_vs_static": (db - eb) / eb,
                    "dyneval_full_cpu_kBps": n / dsec / 1000})
    return out


@click.command("export")
@click.argument("ckpt", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="Model name (a new name for every new model).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"),
              show_default=True, help="Folder to write NAME.pt and NAME.json into (relative to "
              "the current directory: run from the repository root to ship a model).")
@click.option("--val", default=None, help="Held-out text (file, folder or .tar.xz) to measure "
              "float vs exact cross-entropy on.")
@click.option("--val-bytes", default=1 << 18, show_default=True)
@click.option("--de-data", default=None, help="Training text (file, folder or .tar.xz; not the "
              "validation shard) to measure the dynamic-evaluation statistics on; without it the "
              "model cannot be used with --dynamic-eval.")
@click.option("--arith", type=click.Choice(exact.ARITHS), default=exact.ARITH_I16,
              show_default=True, help="Integer arithmetic: exact-v1 (int16 weights, float64 "
              "products, dynamic evaluation) or exact-i8-v1 (int8 weights and activations, "
              "integer products on int8 units; no dynamic evaluation).")
def export_cmd(ckpt, name, out_dir, val, val_bytes, de_data, arith):
    """Convert a trained float checkpoint into a shipped integer model file."""
    try:
        rec = export(ckpt, name, out_dir, val, val_bytes, de_data=de_data, arith=arith)
    except NNCError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps({k: rec[k] for k in ("name", "sha256", "bytes")}))
    if "validation" in rec:
        v = rec["validation"]
        click.echo(f"float {v['float_bpb']:.4f} bpb, exact {v['exact_bpb']:.4f} bpb "
                   f"({100 * v['exact_vs_float']:+.2f}%), exact CPU {v['exact_cpu_kBps']:.1f} KB/s")
        if "dyneval_bpb" in v:
            click.echo(f"dynamic evaluation {v['dyneval_bpb']:.4f} bpb "
                       f"({100 * v['dyneval_vs_static']:+.2f}%), {v['dyneval_cpu_kBps']:.1f} KB/s")
        if "dyneval_full_bpb" in v:
            click.echo(f"full dynamic evaluation {v['dyneval_full_bpb']:.4f} bpb "
                       f"({100 * v['dyneval_full_vs_static']:+.2f}%), "
                       f"{v['dyneval_full_cpu_kBps']:.1f} KB/s")
