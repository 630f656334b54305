"""Training of the float FS-LSTM: ``train()`` (a plain function) and ``train_cmd`` (click).

Data: files, folders (recursive, sorted) or tar shards (.tar.xz etc., members read with tarfile in
archive order, bytes as they are); the training stream is their concatenation. The stream is cut
into B contiguous parts read in parallel, BPTT windows of T bytes, the recurrent state carried
from one window to the next (truncated BPTT) and reset when the parts wrap around (an epoch).

Files written, with out_path = e.g. runs/small/small.pt:
    small.pt     the model: {"format", "version", "config", "state_dict"} (weights only)
    small.json   the record: config, data with sha256, steps, bytes seen, validation bpb, hardware
    small.ckpt   the checkpoint for --resume: model, optimizer, step, data position, state, RNG,
                 and the run's arguments (data, validation, output, steps, schedule, precision)
All three are rewritten at every evaluation and at least every `checkpoint_minutes`, so a run
stopped at any moment loses at most that much work; `nncompress train --resume small.ckpt`
continues it bit for bit (the same weights as an uninterrupted run, on the same machine kind).
Every .pt/.ckpt is a plain dict of tensors, numbers and strings (torch.load(weights_only=True)).

Precision: "bf16" (the default) runs the forward pass under torch.autocast with bfloat16 on the
CPU (AMX/AVX-512 where the CPU has them) or CUDA, float32 master weights and optimizer state;
"fp32" runs everything in float32. Evaluation is always float32.
"""
from __future__ import annotations

import json
import math
import os
import platform
import tarfile
import time
from pathlib import Path
from typing import Callable, Iterable

import click

from ..predictors.modelfiles import file_sha256

TAR_SUFFIXES = (".tar", ".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2")
CKPT_FORMAT = "nncompress-fslstm-checkpoint"
PRECISIONS = ("bf16", "fp32")


# ---------------------------------------------------------------------------------------------
# data

def _sha256_file(path: Path) -> str:
    return file_sha256(path).hex()


def _expand(paths: Iterable) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return out


def read_data(paths: Iterable) -> tuple[bytes, list[dict]]:
    """Concatenated bytes of all files (tar members included) and a list of
    {"path", "sha256", "bytes"} for each file or shard given (bytes = its contribution)."""
    chunks, shards = [], []
    for p in _expand(paths):
        n0 = sum(map(len, chunks))
        if p.name.endswith(TAR_SUFFIXES):
            with tarfile.open(p, "r:*") as tf:
                for m in tf:
                    if m.isfile():
                        chunks.append(tf.extractfile(m).read())
        else:
            chunks.append(p.read_bytes())
        shards.append({"path": str(p), "sha256": _sha256_file(p),
                       "bytes": sum(map(len, chunks)) - n0})
    data = b"".join(chunks)
    if len(data) < 2:
        raise ValueError(f"no data in {list(map(str, paths))}")
    return data, shards


# ---------------------------------------------------------------------------------------------
# pieces of the loop

def _pick_device(device: str):
    import torch
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda but CUDA is not available")
    return torch.device(device)


def _hardware(dev) -> dict:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    hw = {"cpu": cpu, "torch": torch.__version__, "python": platform.python_version(),
          "threads": torch.get_num_threads(), "device": str(dev)}
    if dev.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(dev)
    return hw


def _val_slice(val, n_streams: int, val_bytes: int):
    """A fixed slice of the validation data: n_streams windows of val_bytes/n_streams (+1 for the
    last target) at evenly spaced offsets. Returns (n_streams, L+1) uint8."""
    import torch
    n_streams = max(1, min(n_streams, (len(val) - 1) // 2))
    L = max(1, min(val_bytes // n_streams, (len(val) - 1) // n_streams))
    stride = (len(val) - 1 - L) // max(1, n_streams - 1) if n_streams > 1 else 0
    starts = torch.arange(n_streams) * stride
    return val[starts[:, None] + torch.arange(L + 1)]


def evaluate(model, vslice, chunk: int = 256) -> float:
    """Bits per byte of the model (eval mode, float32) on (S, L+1) bytes, state carried."""
    import torch
    was_training = model.training
    model.eval()
    dev = model.out_W.device
    total, n = 0.0, 0
    with torch.no_grad():
        state = model.init_state(vslice.shape[0], dev)
        L = vslice.shape[1] - 1
        for s in range(0, L, chunk):
            x = vslice[:, s:min(s + chunk, L) + 1].to(dev).long()
            logits, state = model(x[:, :-1], state)
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1),
                reduction="sum").item()
            n += x[:, 1:].numel()
    model.train(was_training)
    return total / n / math.log(2)


def export_model(model, cfg, path: Path) -> None:
    """The model file: weights only, float32, on CPU."""
    import torch
    from ..predictors.fslstm import FORMAT, VERSION
    sd = {k: v.detach().to("cpu", torch.float32).contiguous()
          for k, v in model.state_dict().items()}
    _atomic_save({"format": FORMAT, "version": VERSION, "config": cfg.to_dict(), "state_dict": sd},
                 path)


def load_model(path, device="cpu"):
    """Rebuild an FSRNN (eval mode) from a model file written by export_model."""
    import torch
    from ..errors import ModelError
    from ..predictors.fslstm import FORMAT, FSRNN, VERSION, FSConfig
    try:
        d = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # not a torch file, damaged, or not plain data
        raise ModelError(f"cannot read model file {path}: {e.__class__.__name__}: {e}") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ModelError(f"{path}: not an {FORMAT} model file")
    if d.get("version") != VERSION:
        raise ModelError(f"{path}: unsupported model version {d.get('version')}")
    model = FSRNN(FSConfig.from_dict(d["config"]), device=device)
    model.load_state_dict(d["state_dict"])
    return model.eval()


def _atomic_save(obj, path: Path) -> None:
    import torch
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_json(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# the training function

def train(cfg, data_paths, val_paths, out_path, steps: int, *, resume=None, seed: int = 0,
          device: str = "auto", threads: int | None = None, log_every: int = 100,
          eval_every: int = 1000, val_bytes: int = 1 << 20, val_streams: int = 32,
          patience: int = 2, anneal: float = 0.0, ckpt_path=None, config_name: str | None = None,
          precision: str = "bf16", checkpoint_minutes: float = 10.0,
          log: Callable[[str], None] | None = None) -> dict:
    """Train an FS-LSTM (config name or FSConfig) for `steps` optimizer steps in total (a resumed
    run continues up to `steps`). Returns the JSON record that is also written next to out_path.

    The learning rate is multiplied by 0.1 after `patience` evaluations in a row without a new
    best validation bits per byte. With anneal > 0 it also decays linearly to x0.1 over the last
    `anneal` fraction of the steps (useful when a run sees less than an epoch and never plateaus).
    Validation: `val_streams` windows, `val_bytes` in all, evenly spread over the validation data
    (the same slice at every evaluation). A checkpoint is also written whenever
    `checkpoint_minutes` have passed since the last one.
    """
    import torch
    from ..predictors.fslstm import FSRNN, FSConfig, count_parameters, get_config

    log = log or (lambda s: print(s, flush=True))
    if threads:
        torch.set_num_threads(threads)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    dev = _pick_device(device)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    json_path = out_path.with_suffix(".json")
    ckpt_path = Path(ckpt_path) if ckpt_path else out_path.with_suffix(".ckpt")

    ck = None
    if resume:
        ck = torch.load(resume, map_location="cpu", weights_only=True)
        if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
            raise ValueError(f"{resume}: not an nncompress training checkpoint")
        cfg, cfg_name, seed = FSConfig.from_dict(ck["config"]), ck["config_name"], ck["seed"]
        precision = ck.get("precision", "fp32")          # version-1 checkpoints ran float32
    else:
        cfg_name = config_name or (cfg if isinstance(cfg, str) else "")
        cfg = get_config(cfg)

    t_load = time.time()
    raw, shards = read_data(data_paths)
    vraw, vshards = read_data(val_paths)
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    val = torch.frombuffer(bytearray(vraw), dtype=torch.uint8)
    del raw, vraw
    if ck is not None and ck["data_sha256"] != [s["sha256"] for s in shards]:
        raise ValueError("resume: the training data differs from the checkpoint's")
    log(f"data: {len(data):,} bytes from {len(shards)} file(s), validation {len(val):,} bytes "
        f"({time.time() - t_load:.1f} s to read)")

    B, T = cfg.batch, cfg.bptt
    L = (len(data) - 1) // B                      # bytes per parallel stream
    if L < T:
        raise ValueError(f"training data too small for batch {B} x bptt {T}")
    starts = ((torch.arange(B) * L)[:, None] + torch.arange(T + 1)).to(dev)  # (B, T+1) at pos 0
    data = data.to(dev)
    vslice = _val_slice(val, val_streams, val_bytes)

    torch.manual_seed(seed)
    model = FSRNN(cfg, device=dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n_params = count_parameters(cfg)
    use_amp = precision == "bf16"

    step, pos, epoch, bytes_seen, wall_prev = 0, 0, 0, 0, 0.0
    lr, best_val, bad_evals, curve = cfg.lr, float("inf"), 0, []
    state = model.init_state(B, dev)
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, pos, epoch, bytes_seen = ck["step"], ck["pos"], ck["epoch"], ck["bytes_seen"]
        lr, best_val, bad_evals = ck["lr"], ck["best_val"], ck["bad_evals"]
        curve, wall_prev = [list(x) for x in ck["val_curve"]], ck["wall_s"]
        state = tuple(s.to(dev) for s in ck["state"])
        torch.set_rng_state(ck["rng_cpu"])
        if dev.type == "cuda" and "rng_cuda" in ck:
            torch.cuda.set_rng_state(ck["rng_cuda"], dev)
        log(f"resumed from {resume} at step {step}")
    anneal_from = steps * (1.0 - anneal) if anneal > 0 else float("inf")

    def set_lr():
        f = 1.0 - 0.9 * max(0.0, step - anneal_from) / max(1.0, steps - anneal_from)
        for g in opt.param_groups:
            g["lr"] = lr * f
        return lr * f

    set_lr()
    log(f"config {cfg_name} {cfg.to_dict()}")
    log(f"{n_params:,} parameters, device {dev}, {torch.get_num_threads()} thread(s), "
        f"{B} streams of {L:,} bytes, bptt {T}, {steps} steps")

    t0 = time.time()

    def record(val_bpb, finished):
        return {
            "format": "nncompress-fslstm-train-record", "version": 1,
            "config_name": cfg_name or None, "config": cfg.to_dict(), "parameters": n_params,
            "model": out_path.name, "model_sha256": _sha256_file(out_path),
            "data": shards, "val_data": vshards,
            "val_slice": {"streams": int(vslice.shape[0]), "bytes": int(vslice[:, 1:].numel())},
            "steps": step, "steps_target": steps, "finished": finished,
            "bytes_seen": bytes_seen, "epochs": epoch + pos / L,
            "val_bpb": val_bpb, "val_curve": curve, "lr": lr,
            "hardware": {**_hardware(dev), "precision": precision},
            "wall_s": round(wall_prev + time.time() - t0, 1), "seed": seed,
        }

    def checkpoint(val_bpb, finished):
        ck = {"format": CKPT_FORMAT, "version": 2, "config": cfg.to_dict(),
              "config_name": cfg_name, "precision": precision, "run": run_args,
              "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
              "optimizer": opt.state_dict(), "step": step, "pos": pos, "epoch": epoch,
              "bytes_seen": bytes_seen, "lr": lr, "best_val": best_val, "bad_evals": bad_evals,
              "val_curve": curve, "wall_s": wall_prev + time.time() - t0, "seed": seed,
              "data_sha256": [s["sha256"] for s in shards],
              "state": [s.detach().cpu() for s in state], "rng_cpu": torch.get_rng_state()}
        if dev.type == "cuda":
            ck["rng_cuda"] = torch.cuda.get_rng_state(dev)
        _atomic_save(ck, ckpt_path)
        export_model(model, cfg, out_path)
        rec = record(val_bpb, finished)
        _atomic_json(rec, json_path)
        return rec

    # what `--resume CKPT` alone needs to continue the run (paths as given, checked by sha256)
    run_args = {"data": [str(p) for p in data_paths], "val": [str(p) for p in val_paths],
                "out": str(out_path), "steps": steps, "eval_every": eval_every,
                "val_bytes": val_bytes, "val_streams": val_streams, "patience": patience,
                "anneal": anneal, "log_every": log_every, "threads": threads}

    model.train()
    t_log, bytes_log, loss_sum, loss_n = time.time(), 0, 0.0, 0
    t_ckpt = time.time()
    val_bpb = curve[-1][1] if curve else None
    rec = None
    while step < steps:
        if pos + T > L:                         # the streams wrap around: next epoch, fresh state
            pos, epoch = 0, epoch + 1
            state = model.init_state(B, dev)
        batch = data[starts + pos].long()        # (B, T+1)
        lr_now = set_lr()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            logits, state = model(batch[:, :-1], state)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = tuple(s.detach().float() for s in state)
        step, pos, bytes_seen = step + 1, pos + T, bytes_seen + B * T
        loss_sum, loss_n, bytes_log = loss_sum + loss.item(), loss_n + 1, bytes_log + B * T

        if step % log_every == 0 or step == steps:
            dt = time.time() - t_log
            log(f"step {step}/{steps} | train bpb {loss_sum / loss_n / math.log(2):.4f} | "
                f"lr {lr_now:.2e} | {bytes_log / dt:,.0f} B/s | {bytes_seen:,} bytes | "
                f"{wall_prev + time.time() - t0:,.0f} s")
            t_log, loss_sum, loss_n, bytes_log = time.time(), 0.0, 0, 0
        if step % eval_every == 0 or step == steps:
            te = time.time()
            val_bpb = evaluate(model, vslice)
            curve.append([step, round(val_bpb, 5)])
            if val_bpb < best_val:
                best_val, bad_evals = val_bpb, 0
            else:
                bad_evals += 1
                if bad_evals >= patience:
                    lr, bad_evals = lr * 0.1, 0
            rec = checkpoint(val_bpb, finished=step >= steps)
            log(f"eval step {step} | val bpb {val_bpb:.4f} | best {best_val:.4f} | "
                f"lr {set_lr():.2e} | {time.time() - te:.1f} s | saved {out_path}")
            t_log = t_ckpt = time.time()         # bytes/s counts training only
        elif time.time() - t_ckpt >= 60.0 * checkpoint_minutes:
            rec = checkpoint(val_bpb, finished=False)
            log(f"checkpoint step {step} | saved {ckpt_path}")
            t_ckpt = time.time()
    if rec is None:                              # nothing to do (resumed at or past `steps`)
        val_bpb = evaluate(model, vslice)
        rec = checkpoint(val_bpb, finished=True)
    return rec


# ---------------------------------------------------------------------------------------------
# command line

def _resume_args(path) -> dict:
    """The run's arguments as the checkpoint recorded them (version 2 on)."""
    import torch
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise click.BadParameter(f"{path}: not an nncompress training checkpoint",
                                 param_hint="--resume")
    if "run" not in ck:
        raise click.BadParameter(f"{path}: a version-1 checkpoint does not record its run; give "
                                 "DATA, --val, --out and --steps", param_hint="--resume")
    return ck["run"]


@click.command("train")
@click.argument("data", nargs=-1, type=click.Path(exists=True))
@click.option("--config", "config", default="small", show_default=True,
              help="named FS-LSTM config (see nncompress.predictors.fslstm.CONFIGS)")
@click.option("--steps", type=int, default=None, help="total optimizer steps")
@click.option("--val", "val", multiple=True, type=click.Path(exists=True),
              help="validation file, folder or shard (repeatable)")
@click.option("--out", "out", type=click.Path(dir_okay=False),
              help="model file to write; the record goes to the same name with .json")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), default=None,
              help="checkpoint to continue from, bit for bit; its config, seed, precision and "
                   "(unless given again) data, --val, --out and --steps are used")
@click.option("--checkpoint", "ckpt", type=click.Path(dir_okay=False), default=None,
              help="checkpoint file to write [default: --out with .ckpt; when resuming, the "
                   "resumed file]")
@click.option("--checkpoint-minutes", type=float, default=10.0, show_default=True,
              help="write a checkpoint at least this often (besides every evaluation)")
@click.option("--precision", type=click.Choice(PRECISIONS), default="bf16", show_default=True,
              help="bf16: bfloat16 autocast (AMX on the CPU), float32 master weights")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads")
@click.option("--log-every", type=int, default=None, help="steps between log lines [100]")
@click.option("--eval-every", type=int, default=None,
              help="steps between validation + checkpoint + model export [1000]")
@click.option("--val-bytes", type=int, default=None, help="validation bytes [1048576]")
@click.option("--patience", type=int, default=None,
              help="evaluations without a new best before LR x 0.1 [2]")
@click.option("--anneal", type=float, default=None,
              help="fraction of the final steps over which the LR decays linearly to x0.1 [0]")
@click.option("--batch", type=int, default=None, help="override the config's batch")
@click.option("--bptt", type=int, default=None, help="override the config's BPTT length")
@click.option("--lr", type=float, default=None, help="override the config's learning rate")
def train_cmd(data, config, steps, val, out, resume, ckpt, checkpoint_minutes, precision, seed,
              device, threads, log_every, eval_every, val_bytes, patience, anneal, batch, bptt,
              lr):
    """Train an FS-LSTM byte model on DATA (files, folders, .tar.xz shards).

    \b
    New run:  nncompress train DATA... --val V --out M.pt --steps N [--config NAME]
    Continue: nncompress train --resume M.ckpt
    """
    from dataclasses import replace
    from ..predictors.fslstm import get_config
    over = {k: v for k, v in (("batch", batch), ("bptt", bptt), ("lr", lr)) if v is not None}
    sched = {"log_every": log_every, "eval_every": eval_every, "val_bytes": val_bytes,
             "patience": patience, "anneal": anneal}
    if resume:
        if over:
            raise click.UsageError("--batch/--bptt/--lr cannot change a resumed run")
        run = _resume_args(resume)
        data, val, out = data or run["data"], val or run["val"], out or run["out"]
        steps = steps if steps is not None else run["steps"]
        sched = {k: v if v is not None else run[k] for k, v in sched.items()}
        sched["val_streams"] = run["val_streams"]
        ckpt = ckpt or resume
        threads = threads or run.get("threads")   # float sums may depend on the thread count
        cfg, name = None, None
    else:
        try:
            cfg = get_config(config)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--config")
        name = config + "".join(f" {k}={v}" for k, v in over.items())
        cfg = replace(cfg, **over)
        sched = {k: v if v is not None else d for (k, v), d in
                 zip(sched.items(), (100, 1000, 1 << 20, 2, 0.0))}
    for what, v in (("DATA", data), ("--val", val), ("--out", out), ("--steps", steps)):
        if not v:
            raise click.UsageError(f"{what} is needed for a new run (or give --resume CKPT)")
    rec = train(cfg, data, val, out, steps, resume=resume, seed=seed, device=device,
                config_name=name, threads=threads, ckpt_path=ckpt, precision=precision,
                checkpoint_minutes=checkpoint_minutes, **sched)
    click.echo(f"done: {rec['steps']} steps, val bpb {rec['val_bpb']:.4f}, "
               f"{rec['wall_s']:.0f} s -> {out}")


if __name__ == "__main__":
    train_cmd()
