"""The FS-LSTM as a coding predictor: loads an exported integer model file and steps it exactly.

A model file (models/NAME.pt) is a plain dict read with torch.load(weights_only=True):
    {"format": "nncompress-fslstm-exact", "version": 1, "config": {...FSConfig...},
     "tensors": {name: int tensor or int}}   (see exact.quantize_model for the names)
Its SHA-256 is checked by nncompress.models before it gets here.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ...errors import ModelError, ModelMismatchError
from ..base import PredictorIdentity
from . import exact

FORMAT = "nncompress-fslstm-exact"
VERSION = 1
ARITH = "exact-v1"   # the integer arithmetic of exact.py; a change needs a new tag


def save_exact(path, cfg: dict, q: dict) -> None:
    import torch
    tensors = {}
    for k, v in q.items():
        if isinstance(v, (int, np.integer)):
            tensors[k] = int(v)
        else:
            a = np.asarray(v, dtype=np.int64)
            dt = np.int16 if np.abs(a).max(initial=0) < (1 << 15) else np.int32
            if np.abs(a).max(initial=0) >= (1 << 31):
                raise ValueError(f"{k} does not fit in int32")
            tensors[k] = torch.from_numpy(a.astype(dt))
    torch.save({"format": FORMAT, "version": VERSION, "config": dict(cfg), "tensors": tensors}, path)


def read_exact(path) -> tuple[dict, dict]:
    import torch
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle that is not plain data, or a damaged file
        raise ModelError(f"cannot read model file {path}: {e}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path} is not an nncompress FS-LSTM model file")
    if blob.get("version") != VERSION:
        raise ModelError(f"{path}: unsupported model file version {blob.get('version')}")
    q = {k: (v if isinstance(v, int) else v.numpy().astype(np.int64))
         for k, v in blob["tensors"].items()}
    return blob["config"], q


def pick_device(device: str) -> tuple[str, str]:
    """(backend, device): numpy on the CPU, torch on CUDA. Both give the same bits."""
    if device == "cpu":
        return "numpy", "cpu"
    import torch
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ModelError("--device cuda was asked for but no CUDA device is available")
        return "torch", "cuda"
    return "numpy", "cpu"


class FSLSTMPredictor:
    # Streams cost the LSTM little and buy speed (100 KB of trainpool text: 1 stream 2.617 bpb
    # at 1.5 KB/s, 24 streams 2.623 bpb at 10.3 KB/s). The count depends on the input size only,
    # never on the device, so a file is the same whether it was made on a CPU or a GPU.
    min_stream_len = 1 << 12
    max_streams = 1024

    def __init__(self, name: str, sha256: bytes, cfg: dict, q: dict, device: str = "auto"):
        self.identity = PredictorIdentity(name, sha256, {"arith": ARITH})
        backend, dev = pick_device(device)
        self.backend = backend
        self.net = exact.ExactFSRNN(cfg, q, backend=backend, device=dev)

        self._blas = _one_blas_thread() if backend == "numpy" else contextlib.nullcontext

    def _out(self, w):
        return w if self.backend == "numpy" else w.cpu().numpy()

    def start(self, n_streams: int) -> np.ndarray:
        with self._blas():
            return self._out(self.net.start(n_streams))

    def step(self, symbols: np.ndarray) -> np.ndarray:
        s = np.asarray(symbols, dtype=np.int64)
        if self.backend == "torch":
            s = self.net.ops.asarray(s)
        with self._blas():
            return self._out(self.net.step(s))


def _one_blas_thread():
    """A context that runs BLAS on one thread. The products here are small (streams x a few
    hundred); multi-threaded OpenBLAS made them 35x slower when the cores were busy (1.3 ms
    against 47 ms per step, 16 streams). The thread count never changes the result."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a listed dependency; run unlimited without it
        return contextlib.nullcontext
    ctl = ThreadpoolController()
    return lambda: ctl.limit(limits=1, user_api="blas")


def load_fslstm(ref, settings=None, device: str = "auto") -> FSLSTMPredictor:
    if settings is not None and settings.get("arith") != ARITH:
        raise ModelMismatchError(f"this file was made with FS-LSTM arithmetic "
                                 f"{settings.get('arith')!r}; this nncompress has {ARITH!r}")
    cfg, q = read_exact(ref.path)
    return FSLSTMPredictor(ref.name, ref.sha256, cfg, q, device)
