"""Helpers that several test files share (and bench/scripts/fuzz_damaged.py): the corpora, a
small text and a random FS-LSTM model, compression in fresh processes, the damage model."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NNCOMPRESS_SHARED", ROOT.parent / "shared"))
CORPORA = SHARED / "corpora"

# A short English text for the FS-LSTM tests, and the text their dynamic-evaluation statistics
# are measured on.
TEXT = (b"It is a truth universally acknowledged, that a single man in possession of a good "
        b"fortune, must be in want of a wife. However little known the feelings or views of such "
        b"a man may be on his first entering a neighbourhood, this truth is so well fixed.\n") * 8
STATS_TEXT = bytes(range(32, 127)) * 40 + TEXT


def corpus_file(rel: str) -> Path:
    """A file of ../shared/corpora, or a skip with a message when it is not there."""
    p = CORPORA / rel
    if not p.is_file():
        pytest.skip(f"{p} not present (the evaluation corpora live in ../shared/corpora)")
    return p


def canterbury_files() -> list[Path]:
    d = CORPORA / "canterbury"
    return sorted(d.iterdir()) if d.is_dir() else []


def random_model(name="tiny", k=None, seed=0):
    """(config dict, state dict of numpy arrays) of an untrained FS-LSTM of config `name`, with
    non-trivial LayerNorm parameters and biases."""
    import torch

    from nncompress.predictors.fslstm.model import FSRNN, get_config
    torch.manual_seed(seed)
    cfg = get_config(name)
    if k is not None:
        cfg.k = k
    m = FSRNN(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 1:
                p.add_(0.2 * torch.randn_like(p))
    sd = {k_: v.detach().numpy() for k_, v in m.state_dict().items()}
    return cfg.to_dict(), sd


def compress_in_fresh_processes(path, src, streams: int, dynamic_eval=True) -> list[bytes]:
    """`src` compressed with model file `path` (None: the default spec) and `dynamic_eval`, in a
    fresh process with 1 and with 2 threads (torch, OpenMP and BLAS)."""
    code = ("import sys, torch, nncompress; torch.set_num_threads(int(sys.argv[3]));"
            "d = open(sys.argv[1], 'rb').read();"
            "sys.stdout.buffer.write(nncompress.compress(d, model=sys.argv[2] or None, "
            f"device='cpu', streams={streams}, dynamic_eval={dynamic_eval!r}))")
    outs = []
    for threads in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
        p = subprocess.run([sys.executable, "-c", code, str(src), str(path or ""), str(threads)],
                           capture_output=True, timeout=300, env=env)
        assert p.returncode == 0, p.stderr.decode()
        outs.append(p.stdout)
    return outs


def mutate(blob, rng):
    """One random damage to `blob` (rng: a random.Random): (kind, position, damaged bytes)."""
    kind = rng.choice(["flip", "byte", "cut", "insert", "delete", "append"])
    b = bytearray(blob)
    i = rng.randrange(len(b))
    if kind == "flip":
        b[i] ^= 1 << rng.randrange(8)
    elif kind == "byte":
        b[i] = (b[i] + rng.randrange(1, 256)) % 256
    elif kind == "cut":
        b = b[:i]
    elif kind == "insert":
        b[i:i] = bytes([rng.randrange(256)])
    elif kind == "delete":
        del b[i]
    else:
        b += bytes([rng.randrange(256)])
    return kind, i, bytes(b)


def step_tables(net, streams):
    """Weights for every step of each stream of an exact FS-LSTM net (streams: list of
    equal-length byte strings): an (S, T, 256) array."""
    import numpy as np
    w = [np.asarray(net.start(len(streams)))]
    arr = np.array([list(s) for s in streams], dtype=np.int64)
    for t in range(arr.shape[1] - 1):
        sym = arr[:, t]
        if net.ops.name == "torch":
            import torch
            w.append(net.step(torch.from_numpy(sym)).cpu().numpy())
        else:
            w.append(np.asarray(net.step(sym)))
    return np.stack(w, 1)


def decode_with(blob: bytes, pred) -> bytes:
    """A non-framed .nnc file decoded by the engine with the predictor given (not rebuilt from
    its header)."""
    import io
    from nncompress import engine
    from nncompress.format import container
    src = io.BytesIO(blob)
    h = container.read_header(src)
    sink = io.BytesIO()
    engine.decode_body(src, h, sink, pred)
    return sink.getvalue()
