"""Finding predictors by name or path, checking model files, rebuilding a file's predictor.

Built-in predictors have no model file: "ctx1" (the order-N context-mixing model), "ctx2" (the
same model set up as an ensemble member: higher orders, sharper) and "order0".
An ensemble is written "A+B[+C...]" (for example "fslstm-small-v2+ctx1"): its members are mixed
online (predictors/mix.py) and the file header records each member's name and model hash. A spec
may end in a final stage that refines whatever the members predict ("ctx1+match" wraps one model,
"A+B+match" the mixture): "+match", the long-range match model and its SSE stage
(predictors/match.py), or "+cm", binary context mixing of the members' prediction with context
models, the match model and an APM over the bit tree (predictors/cm.py).
Trained models are files in models/ (`NAME.pt` beside its record `NAME.json`, which gives its
SHA-256) or any path given with --model. A released model file is never changed: a new model gets a
new name, so old .nnc files keep decoding. Model files are data: they are read with
torch.load(weights_only=True) and checked against their SHA-256 before use.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from .format import limits
from .errors import ModelError, ModelMismatchError
from .predictors.base import NO_MODEL_SHA256, Predictor

DEFAULT_MODEL = "fslstm-small-v3+ctx2+cm"
BUILTIN = ("ctx1", "ctx2", "order0")
MATCH_NAME = "match"   # final stages, not models: only as the last part of a spec
CM_NAME = "cm"
STAGES = (MATCH_NAME, CM_NAME)
MODEL_SUFFIX = ".pt"
ENSEMBLE_SEP = "+"
MIX_NAME = "mix"     # linear mixture (files up to fslstm-small-v3+ctx1+match)
GMIX_NAME = "gmix"   # linear mixture plus geometric stage: the mixer of new ensembles


def model_dirs() -> list[Path]:
    """Where named models are looked up, in order: $NNCOMPRESS_MODELS (os.pathsep-separated),
    the source tree's models/, and the installed share/nncompress/models."""
    dirs = [Path(p) for p in os.environ.get("NNCOMPRESS_MODELS", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parent.parent / "models")
    import sys
    dirs.append(Path(sys.prefix) / "share" / "nncompress" / "models")
    return dirs


@dataclass(frozen=True)
class ModelRef:
    name: str
    path: Optional[Path] = None
    sha256: bytes = NO_MODEL_SHA256

    @property
    def builtin(self) -> bool:
        return self.path is None


def file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def _expected_sha(path: Path) -> Optional[bytes]:
    rec = path.with_suffix(".json")
    if not rec.is_file():
        return None
    try:
        return bytes.fromhex(json.loads(rec.read_text())["sha256"])
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"model record {rec} is malformed ({e})") from None


def _ref_for_file(path: Path) -> ModelRef:
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    sha = file_sha256(path)
    expected = _expected_sha(path)
    if expected is not None and expected != sha:
        raise ModelError(f"model file {path} does not match the SHA-256 in its record "
                         f"{path.with_suffix('.json').name}: it was changed or damaged")
    return ModelRef(path.stem, path, sha)


def available() -> list[str]:
    names = list(BUILTIN)
    for d in model_dirs():
        if d.is_dir():
            names += sorted(p.stem for p in d.glob("*" + MODEL_SUFFIX) if p.stem not in names)
    return names


def split_spec(spec: Optional[str] = None) -> tuple[list[str], Optional[str]]:
    """(model parts, final stage or None) of a spec such as "fslstm-small-v2+ctx1+match"."""
    spec = spec or DEFAULT_MODEL
    parts = [spec] if Path(spec).is_file() else spec.split(ENSEMBLE_SEP)
    stage = parts[-1] if len(parts) > 1 and parts[-1] in STAGES else None
    if stage:
        parts = parts[:-1]
    for name in STAGES:
        if name in parts:
            raise ModelError(f"{spec!r}: {name!r} is a final stage and can only end a spec "
                             f"(for example ctx1+{name})")
    return parts, stage


def resolve_all(spec: Optional[str] = None) -> list[ModelRef]:
    """The models of a spec: one, or the members of an ensemble "A+B" (default: DEFAULT_MODEL);
    a final stage ("+match", "+cm") is not a model and is left out."""
    return [resolve(p) for p in split_spec(spec)[0]]


def resolve(name_or_path: str) -> ModelRef:
    """A built-in name, a model name in models/, or a path to a model file (one model)."""
    name = name_or_path
    if not name:
        raise ModelError("no model named")
    if name in BUILTIN:
        return ModelRef(name)
    p = Path(name)
    if p.suffix == MODEL_SUFFIX or os.sep in name or p.is_file():
        return _ref_for_file(p)
    for d in model_dirs():
        cand = d / (name + MODEL_SUFFIX)
        if cand.is_file():
            return _ref_for_file(cand)
    raise ModelError(f"unknown model {name!r}; available: {', '.join(available())}")


def load_predictor(ref: ModelRef, settings: Optional[dict] = None, device: str = "auto",
                   dynamic_eval=None) -> Predictor:
    """Builds the predictor for `ref`. `settings` (from a file header) override the defaults;
    `dynamic_eval` (None: the model's own default, False, True, or a dict of overrides) only
    concerns FS-LSTM models."""
    if ref.name in ("ctx1", "ctx2") and ref.builtin:
        from .predictors.context import ContextModel
        return ContextModel(ref.name, **(settings or {}))
    if ref.name == "order0" and ref.builtin:
        from .predictors.order0 import Order0
        return Order0(**(settings or {}))
    from .predictors.fslstm.predictor import load_fslstm  # torch is imported from here on
    return load_fslstm(ref, settings=settings, device=device, dynamic_eval=dynamic_eval)


def ref_for_header(name: str, sha256: bytes, extra: Iterable[str] = ()) -> ModelRef:
    """The model a file's header names: built-in, or a file whose SHA-256 matches, looked up in
    the paths given by the user first and then by name in the model folders."""
    if not limits.plain_name(name):
        # only a plain name is looked up (as NAME.pt in the model folders): never a path
        raise ModelMismatchError(f"this file names model {name!r}, which is not a plain model "
                                 "name; refused")
    if sha256 == NO_MODEL_SHA256:
        if name in BUILTIN:
            return ModelRef(name)
        raise ModelMismatchError(f"this file was made with predictor {name!r}, which this "
                                 "version of nncompress does not have")
    candidates: list[Path] = []
    for e in extra:
        p = Path(e)
        candidates += sorted(p.glob("*" + MODEL_SUFFIX)) if p.is_dir() else [p]
    for d in model_dirs():
        candidates.append(d / (name + MODEL_SUFFIX))
        if d.is_dir():
            candidates += sorted(d.glob("*" + MODEL_SUFFIX))
    for c in candidates:
        if c.is_file() and file_sha256(c) == sha256:
            return ModelRef(name, c, sha256)
    raise ModelMismatchError(
        f"this file needs model {name!r} (sha256 {sha256.hex()[:16]}...), which was not found "
        f"in {', '.join(str(d) for d in model_dirs())}; pass its file with --model PATH")



def build_predictor(spec: Optional[str] = None, device: str = "auto",
                    dynamic_eval=None) -> Predictor:
    """The predictor for compressing with `spec`: one model, or an ensemble "A+B+...".
    `dynamic_eval`: None (each FS-LSTM member adapts when its model file carries the statistics),
    False, True or a dict of overrides (see predictors/fslstm/dyneval.py); the built-in
    context models adapt by counting anyway."""
    parts, stage = split_spec(spec)
    if len(parts) > limits.MAX_MEMBERS:
        raise ModelError(f"an ensemble has at most {limits.MAX_MEMBERS} members, not {len(parts)}")
    refs = [resolve(p) for p in parts]
    if dynamic_eval and all(r.builtin for r in refs):
        raise ModelError(f"dynamic evaluation needs an FS-LSTM model; {spec or DEFAULT_MODEL!r} "
                         "has none (the built-in context models adapt by counting anyway)")
    preds = [load_predictor(r, device=device, dynamic_eval=dynamic_eval) for r in refs]
    if len(preds) == 1:
        pred = preds[0]
    else:
        from .predictors.mix import GeoMixture
        pred = GeoMixture(preds)
    if stage == MATCH_NAME:
        from .predictors.match import MatchStage
        pred = MatchStage(pred)
    elif stage == CM_NAME:
        from .predictors.cm import CMStage
        pred = CMStage(pred)
    check_predictor(pred)
    return pred


def check_predictor(pred: Predictor) -> None:
    """Raises ModelError when a predictor's identity is outside the limits that decoding applies
    (limits.check_identity), so that no file is written that could not be read back."""
    i = pred.identity
    try:
        limits.check_identity(i.name, i.model_sha256.hex(), i.settings)
    except limits.LimitError as e:
        raise ModelError(f"{e.what} settings are outside this format's limits ({e.detail})"
                         ) from None


def stream_cap(settings: dict) -> int:
    """The most streams a predictor with these settings codes (limits.max_streams)."""
    return limits.max_streams(settings)


def predictor_for_header(name: str, sha256: bytes, settings: dict, extra: Iterable[str] = (),
                         device: str = "auto") -> Predictor:
    """Rebuilds the predictor a file was written with, or raises ModelMismatchError naming what
    is missing; nothing is decoded before this succeeds. The whole description is checked
    against nncompress.limits before any model file is looked up or any table allocated."""
    if not isinstance(sha256, bytes) or len(sha256) != 32:
        raise ModelMismatchError("this file's model hash is not 32 bytes")
    try:
        limits.check_identity(name, sha256.hex(), settings)
    except limits.LimitError as e:
        raise ModelMismatchError(f"this file's {e.what} settings are not understood ({e.detail})"
                                 ) from None
    return _rebuild(name, sha256, settings, list(extra), device)


def _rebuild(name: str, sha256: bytes, settings: dict, extra: list, device: str) -> Predictor:
    if name in STAGES and sha256 != NO_MODEL_SHA256:
        if name == MATCH_NAME:
            from .predictors.match import ARITH, MatchStage as Stage
        else:
            from .predictors.cm import ARITH, CMStage as Stage
        from .predictors.base import stage_sha256
        try:
            inner = settings["inner"]
            spec = (inner["name"], bytes.fromhex(inner["sha256"]), inner["settings"])
            own = {k: v for k, v in settings.items() if k not in ("inner", "arith")}
            if settings["arith"] != ARITH:
                raise ValueError(settings["arith"])
        except (KeyError, TypeError, ValueError):
            raise ModelMismatchError(f"this file's {name} stage is not understood by this "
                                     "version of nncompress") from None
        if stage_sha256(name, spec[0], spec[1]) != sha256:
            raise ModelMismatchError(f"this file's {name}-stage identity does not match its model")
        wrapped = _rebuild(*spec, extra, device)
        try:
            return Stage(wrapped, **own)
        except (TypeError, ValueError) as e:
            raise ModelMismatchError(f"this file's {name}-stage settings are not understood ({e})"
                                     ) from None
    if name in (MIX_NAME, GMIX_NAME) and sha256 != NO_MODEL_SHA256:
        from .predictors.mix import GeoMixture, Mixture, ensemble_sha256
        try:
            specs = [(m["name"], bytes.fromhex(m["sha256"]), m["settings"]) for m in settings["members"]]
            share = int(settings["share"])
            if int(settings.get("temper", 1)) != 1 or settings.get("buckets") != "class4-v1":
                raise ValueError("mixer variant")
            if name == GMIX_NAME:
                lr_shift = int(settings["lr_shift"])
                if settings["arith"] != GeoMixture.ARITH:
                    raise ValueError("mixer arithmetic")
        except (KeyError, TypeError, ValueError):
            raise ModelMismatchError("this file's ensemble description is not understood by this "
                                     "version of nncompress") from None
        import hashlib
        ident = hashlib.sha256(b"".join(n.encode() + b"\0" + h for n, h, _ in specs)).digest()
        if ident != sha256:  # the same as ensemble_sha256 of the members, before building them
            raise ModelMismatchError("this file's ensemble identity does not match its members")
        members = [_rebuild(n, h, st, extra, device) for n, h, st in specs]
        if ensemble_sha256(members) != sha256:
            raise ModelMismatchError("this file's ensemble identity does not match its members")
        try:
            if name == GMIX_NAME:
                return GeoMixture(members, share=share, lr_shift=lr_shift)
            return Mixture(members, share=share)
        except ValueError as e:
            raise ModelMismatchError(f"this file's mixer settings are not understood ({e})"
                                     ) from None
    ref = ref_for_header(name, sha256, extra)
    try:
        return load_predictor(ref, settings=settings, device=device)
    except (TypeError, ValueError) as e:  # settings this version's predictor does not take
        raise ModelMismatchError(f"predictor {name!r} cannot be rebuilt with this file's "
                                 f"settings ({e})") from None
