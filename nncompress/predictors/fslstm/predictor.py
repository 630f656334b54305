"""The FS-LSTM as a coding predictor: loads an exported integer model file and steps it exactly.

A model file (models/NAME.pt) is a plain dict read with torch.load(weights_only=True):
    {"format": "nncompress-fslstm-exact", "version": 1 or 2, "config": {...FSConfig...},
     "tensors": {name: int tensor or int}}   (see exact.quantize_model for the names)
Version 2 adds the dynamic-evaluation statistics ("de.ms.*" tensors, see dyneval.py) and
config["dyneval"], the settings tuned for the model (used when none are given).
Its SHA-256 is checked by predictors/modelfiles.py before it gets here.
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from ...errors import ModelError, ModelMismatchError
from .. import schema
from ..base import PredictorIdentity, Registered, StreamLimits
from . import backward, dyneval, exact

FORMAT = "nncompress-fslstm-exact"
VERSIONS = (1, 2)
ARITH = exact.ARITH_I16   # the integer arithmetics of exact.py (config["arith"] of a model file
ARITHS = exact.ARITHS     # says which); a change of either needs a new tag


def save_exact(path, cfg: dict, q: dict) -> None:
    import torch
    version = 2 if any(k.startswith("de.") for k in q) else 1
    tensors = {}
    for k, v in q.items():
        if isinstance(v, (int, np.integer)):
            tensors[k] = int(v)
        else:
            a = np.asarray(v, dtype=np.int64)
            top = np.abs(a).max(initial=0)
            dt = np.int8 if top < (1 << 7) else np.int16 if top < (1 << 15) else np.int32
            if np.abs(a).max(initial=0) >= (1 << 31):
                raise ValueError(f"{k} does not fit in int32")
            tensors[k] = torch.from_numpy(a.astype(dt))
    torch.save({"format": FORMAT, "version": version, "config": dict(cfg), "tensors": tensors}, path)


def read_exact(path) -> tuple[dict, dict]:
    import torch
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle that is not plain data, or a damaged file
        raise ModelError(f"cannot read model file {path}: {e}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path} is not an nncompress FS-LSTM model file")
    if blob.get("version") not in VERSIONS:
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


# Full dynamic evaluation keeps every step of a segment for the backward pass: fewer streams
# bound that memory (256 streams x 8 steps of the small model: about 80 MB).
FULL_DE_MAX_STREAMS = backward.MAX_STREAMS


class FSLSTMPredictor(Registered):
    """A model-file predictor: its header records the model's name and file hash."""
    MODEL_FILE = True
    ARITH = ARITHS
    ARITH_REFUSED = ("this file's model {name!r} is for FS-LSTM arithmetic {got}; this nncompress "
                     "has {arith}")
    SETTINGS = schema.Schema({"dyneval": schema.optional_object()})
    # Streams cost the LSTM little and buy speed (100 KB of trainpool text: 1 stream 2.617 bpb
    # at 1.5 KB/s, 24 streams 2.623 bpb at 10.3 KB/s). The count depends on the input size only,
    # never on the device, so a file is the same whether it was made on a CPU or a GPU. Full
    # dynamic evaluation codes at most FULL_DE_MAX_STREAMS (stream_limits).
    MIN_STREAM_LEN = 1 << 12
    MAX_STREAMS = 1024

    def __init__(self, name: str, sha256: bytes, cfg: dict, q: dict, device: str = "auto",
                 de: "dyneval.DynEvalSettings | None" = None, backend: str | None = None):
        settings = {"arith": exact.arith_of(cfg)}
        if de is not None and exact.arith_of(cfg) != ARITH:
            raise ModelError(f"model {name!r} ({exact.arith_of(cfg)}) has no dynamic evaluation")
        if de is not None:
            settings["dyneval"] = de.to_json()
        self.identity = PredictorIdentity(name, sha256, settings)
        if backend is None:
            backend, dev = pick_device(device)
        else:  # tests: the torch backend on the CPU is what CUDA runs
            dev = device if device != "auto" else "cpu"
        self.backend = backend
        self.net = exact.ExactFSRNN(cfg, q, backend=backend, device=dev)
        if de is None:
            self.de = None
        elif de.scope == "full":
            self.de = dyneval.FullDynEval(self.net, q, de)
        else:
            self.de = dyneval.OutputDynEval(self.net, q, de)

        self._blas = _one_blas_thread() if backend == "numpy" else contextlib.nullcontext

    @classmethod
    def what(cls, name: str) -> str:
        return f"model {name}"

    @classmethod
    def check_settings(cls, name: str, settings: dict, header: bool = False) -> dict:
        cfg = super().check_settings(name, settings, header)
        if "dyneval" in cfg:
            what = f"model {name} dynamic-evaluation"
            de = dyneval.SCHEMA.check(what, cfg["dyneval"], header=True)
            if de["arith"] == dyneval.ARITH_FULL and de["segment"] > backward.MAX_SEGMENT:
                raise schema.SettingsError(what, f"segment must be in 1..{backward.MAX_SEGMENT}, "
                                                 f"not {de['segment']}")
            cfg["dyneval"] = de
        return cfg

    @classmethod
    def table_bytes(cls, settings: dict) -> int:
        return 64 << 20

    @classmethod
    def stream_limits(cls, settings: dict, children: list) -> StreamLimits:
        de = settings.get("dyneval")
        if de is not None and de["arith"] == dyneval.ARITH_FULL:
            return StreamLimits(cls.MIN_STREAM_LEN, FULL_DE_MAX_STREAMS, FULL_DE_MAX_STREAMS)
        return StreamLimits(cls.MIN_STREAM_LEN, cls.MAX_STREAMS, cls.STREAM_CAP)

    @classmethod
    def from_file(cls, ref, device: str = "auto", dynamic_eval=None) -> "FSLSTMPredictor":
        """The predictor of a model file (a checked modelfiles.ModelRef), for compressing:
        `dynamic_eval` as in load_fslstm."""
        return load_fslstm(ref, device=device, dynamic_eval=dynamic_eval)

    @classmethod
    def from_identity(cls, name, settings, children, source):
        return load_fslstm(source.model_file(), settings={"arith": ARITH, **settings},
                           device=source.device)   # the header's arith, where it has one

    def _out(self, w):
        return w if self.backend == "numpy" else w.cpu().numpy()

    def start(self, n_streams: int) -> np.ndarray:
        with self._blas():
            w = self.net.start(n_streams)
            if self.de is not None:
                self.de.predicted(w)
            return self._out(w)

    def step(self, symbols: np.ndarray) -> np.ndarray:
        s = np.asarray(symbols, dtype=np.int64)
        if self.backend == "torch":
            s = self.net.ops.asarray(s)
        with self._blas():
            if self.de is not None:
                self.de.observe(s)
            w = self.net.step(s)
            if self.de is not None:
                self.de.predicted(w)
            return self._out(w)


def _one_blas_thread():
    """A context that runs BLAS and torch's own kernels (torch._int_mm) on one thread. The
    products here are small (streams x a few hundred); multi-threaded OpenBLAS made them 35x
    slower when the cores were busy (1.3 ms against 47 ms per step, 16 streams), and two torch
    threads made the int8 model 4.6x slower beside another job (64 streams: 12.0 against 2.6 ms
    per step). The thread count never changes the result."""
    import torch
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a listed dependency; run unlimited without it
        ctl = None
    else:
        ctl = ThreadpoolController()

    @contextlib.contextmanager
    def one():
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if ctl is None:
                yield
            else:
                with ctl.limit(limits=1, user_api="blas"):
                    yield
        finally:
            torch.set_num_threads(n)
    return one


def default_dyneval(cfg: dict) -> "dyneval.DynEvalSettings":
    """The dynamic-evaluation settings a model file recommends (or the module's defaults)."""
    return dyneval.DynEvalSettings(**cfg.get("dyneval", {}).get("settings", {}))


def load_fslstm(ref, settings=None, device: str = "auto", dynamic_eval=None) -> FSLSTMPredictor:
    """`settings` come from a file header (decoding). Otherwise `dynamic_eval` chooses: None
    (on when the model file carries dynamic-evaluation statistics), False, True (the model's
    tuned settings) or a dict overriding some of them."""
    de = None
    cfg, q = read_exact(ref.path)
    arith = exact.arith_of(cfg)
    if arith not in ARITHS:
        raise ModelError(f"model {ref.name!r} needs FS-LSTM arithmetic {arith!r}; this "
                         f"nncompress has {', '.join(ARITHS)}")
    if settings is not None:
        if settings.get("arith") != arith:
            raise ModelMismatchError(f"this file was made with FS-LSTM arithmetic "
                                     f"{settings.get('arith')!r}; its model {ref.name!r} has "
                                     f"{arith!r}")
        if set(settings) - {"arith", "dyneval"}:
            raise ModelMismatchError(f"unknown FS-LSTM settings in this file: {sorted(settings)}")
        if "dyneval" in settings:
            try:
                de = dyneval.DynEvalSettings.from_json(settings["dyneval"])
            except (ValueError, KeyError, TypeError) as e:
                raise ModelMismatchError(f"this file's dynamic evaluation is not understood by "
                                         f"this version of nncompress ({e})") from None
    if settings is None and (dynamic_eval or (dynamic_eval is None and "de.ms.out_W" in q)):
        de = default_dyneval(cfg)
        if isinstance(dynamic_eval, dict):
            over = dict(dynamic_eval)
            if over.get("scope", de.scope) != de.scope and "lr" not in over:
                over["lr"] = dyneval.DEFAULT_LR[over["scope"]]  # the model's lr is for its scope
            try:
                de = dataclasses.replace(de, **over)
            except ValueError as e:
                raise ModelError(str(e)) from None
    if de is not None and arith != ARITH:
        raise ModelError(f"model {ref.name!r} has arithmetic {arith}, which has no dynamic "
                         "evaluation: use it static (a :static suffix, or --no-dynamic-eval)")
    if de is not None and not dyneval.has_stats(cfg, q, de.scope):
        what = "full-scope " if de.scope == "full" else ""
        raise ModelError(f"model {ref.name!r} has no {what}dynamic-evaluation statistics; use "
                         "a model exported with them")
    return FSLSTMPredictor(ref.name, ref.sha256, cfg, q, device, de)
