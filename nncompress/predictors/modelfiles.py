"""Model files: finding them by name or path, and checking them against their SHA-256.

Trained models are files `NAME.pt` beside a record `NAME.json` that gives their SHA-256, in the
model folders (model_dirs) or at any path the user gives. A released model file is never changed:
a new model gets a new name, so old .nnc files keep decoding. Model files are data: they are read
with torch.load(weights_only=True) and checked against their SHA-256 before use. A header names a
model by a plain name only; it is looked up as NAME.pt, never as a path.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ..errors import ModelError, ModelMismatchError
from ..format import limits
from .base import NO_MODEL_SHA256

MODEL_SUFFIX = ".pt"


def model_dirs() -> list[Path]:
    """Where named models are looked up, in order: $NNCOMPRESS_MODELS (os.pathsep-separated),
    then the package's data folder: <prefix>/share/nncompress/models for an installed package,
    and for a package used from its source checkout (an editable install) the checkout's
    models/ folder, when there is one beside the package."""
    dirs = [Path(p) for p in os.environ.get("NNCOMPRESS_MODELS", "").split(os.pathsep) if p]
    checkout = Path(__file__).resolve().parents[2] / "models"
    if checkout.is_dir() and (checkout.parent / "pyproject.toml").is_file():
        dirs.append(checkout)
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


def model_names() -> list[str]:
    """The names of the models in the model folders (the first folder's first)."""
    names: list[str] = []
    for d in model_dirs():
        if d.is_dir():
            names += sorted(p.stem for p in d.glob("*" + MODEL_SUFFIX) if p.stem not in names)
    return names


def is_path(name: str) -> bool:
    """Whether a spec's member names a model file by its path rather than by a name."""
    try:
        return Path(name).suffix == MODEL_SUFFIX or os.sep in name or Path(name).is_file()
    except (OSError, ValueError):
        return False


def resolve(name_or_path: str) -> ModelRef:
    """A model file: by its name in the model folders, or by its path."""
    name = name_or_path
    if not name:
        raise ModelError("no model named")
    if is_path(name):
        return _ref_for_file(Path(name))
    for d in model_dirs():
        cand = d / (name + MODEL_SUFFIX)
        if cand.is_file():
            return _ref_for_file(cand)
    raise ModelError(f"unknown model {name!r}; the model folders hold: "
                     f"{', '.join(model_names()) or 'none'}")


def ref_for_header(name: str, sha256: bytes, extra: Iterable[str] = ()) -> ModelRef:
    """The model file a header names: one whose SHA-256 matches, looked up in the paths given by
    the user (`extra`: files or folders) first and then by name in the model folders."""
    if not limits.plain_name(name):
        # only a plain name is looked up (as NAME.pt in the model folders): never a path
        raise ModelMismatchError(f"this file names model {name!r}, which is not a plain model "
                                 "name; refused")
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
