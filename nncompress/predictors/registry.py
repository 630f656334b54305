"""The predictor registry: the names a header may record, and the classes behind them.

Every predictor class declares what the registry needs (base.Registered): the names its headers
record, its arithmetic tag, its settings schema, its children (a final stage wraps one predictor,
an ensemble has members), its stream limits, and how it builds itself from its own header
identity. Everything else is a generic walk over a header's predictor description:

- check(): the whole description against the schemas and the format's limits (names, types,
  ranges, member counts, nesting depth, table memory), before any model file is looked up or
  any table allocated. The writer is held to the same check (check_predictor), so every file it
  writes passes it.
- Node.stream_limits(): how many streams the described predictor takes.
- rebuild(): the predictor itself, children first.

A header's (name, model hash) chooses the class: a built-in predictor has no model file (32 zero
bytes), a stage or an ensemble records the hash of its children's identities, and any other name
with a hash names a model file, built by the model-file class (the FS-LSTM).

Adding a predictor is one class and one register() line. Classes are given as "module:Class"
and imported on first use, so that importing nncompress loads neither numba nor torch.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Union

from ..errors import ModelError, ModelMismatchError
from ..format import limits
from . import modelfiles
from .base import NO_MODEL_SHA256, Predictor, StreamLimits
from .schema import SettingsError, short

# The key of the model-file class (not a plain name, so no header name can be it).
MODEL_FILE = "<model file>"

_ENTRIES: dict[str, Union[str, type]] = {}
_CHILDREN: dict[str, Optional[str]] = {}    # each name's declared CHILDREN


def register(cls: Union[str, type], *names: str, children: Optional[str] = None) -> None:
    """Registers a predictor class under the names its headers record: a class (its NAMES, or
    the model-file class when it sets MODEL_FILE), or "module:Class" with its names, imported on
    first use; `children` then declares its CHILDREN (None, "inner", "members"), so that the
    spec grammar can tell stages from members without importing it (checked on import)."""
    if isinstance(cls, str):
        keys = names
    else:
        keys = names or ((MODEL_FILE,) if cls.MODEL_FILE else tuple(cls.NAMES))
        children = cls.CHILDREN
    if not keys:
        raise ValueError("a predictor class needs at least one name")
    for key in keys:
        if key != MODEL_FILE and not limits.plain_name(key):
            raise ValueError(f"predictor name {key!r} is not a plain name")
        _ENTRIES[key] = cls
        _CHILDREN[key] = children


def unregister(*names: str) -> None:
    for key in names:
        _ENTRIES.pop(key, None)
        _CHILDREN.pop(key, None)


register("nncompress.predictors.order0:Order0", "order0")
register("nncompress.predictors.context:ContextModel", "ctx1", "ctx2")
register("nncompress.predictors.bcm:BCM", "bcm")
register("nncompress.predictors.match:MatchStage", "match", children="inner")
register("nncompress.predictors.cm:CMStage", "cm", children="inner")
register("nncompress.predictors.bmix:BMixStage", "bmix", children="inner")
register("nncompress.predictors.mix:Mixture", "mix", children="members")
register("nncompress.predictors.mix:GeoMixture", "gmix", children="members")
register("nncompress.predictors.fslstm.predictor:FSLSTMPredictor", MODEL_FILE)


def _load(key: str) -> type:
    entry = _ENTRIES[key]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        if not (key in entry.NAMES or key == MODEL_FILE and entry.MODEL_FILE):
            raise RuntimeError(f"{entry.__name__} does not declare the name {key!r}")
        if entry.CHILDREN != _CHILDREN.get(key):
            raise RuntimeError(f"{entry.__name__} has CHILDREN {entry.CHILDREN!r}, registered "
                               f"as {_CHILDREN.get(key)!r}")
        _ENTRIES[key] = entry
    return entry


def names() -> list[str]:
    """Every registered header name (the model-file class has none of its own)."""
    return [k for k in _ENTRIES if k != MODEL_FILE]


def get(name: str) -> type:
    """The class registered under `name`; ModelError when there is none."""
    if name not in _ENTRIES or name == MODEL_FILE:
        raise ModelError(f"no predictor is registered as {name!r}")
    return _load(name)


def is_builtin(cls: type) -> bool:
    """A predictor without a model file and without children (ctx1, order0, ...)."""
    return cls.CHILDREN is None and not cls.MODEL_FILE


def builtin_names() -> list[str]:
    """Predictors without a model file and without children (as registered: nothing is
    imported)."""
    return [n for n in names() if _CHILDREN[n] is None]


def stage_names() -> list[str]:
    """The final stages: classes that wrap one predictor ("match", "cm")."""
    return [n for n in names() if _CHILDREN[n] == "inner"]


def model_file_class() -> type:
    return _load(MODEL_FILE)


def class_for(name: str, sha256: bytes) -> type:
    """The class that rebuilds a header's (name, model hash); ModelMismatchError naming the
    predictor when this version has none."""
    cls = _load(name) if name in _ENTRIES and name != MODEL_FILE else None
    if sha256 == NO_MODEL_SHA256:
        if cls is not None and is_builtin(cls):
            return cls
        raise ModelMismatchError(f"this file was made with predictor {name!r}, which this "
                                 "version of nncompress does not have")
    if cls is not None and cls.CHILDREN is not None:
        return cls
    return model_file_class()


# ---------------------------------------------------------------- the checked description

@dataclass
class Node:
    """One predictor of a checked description: its class, its own settings (checked, defaults
    filled in, without "arith" and its children) and its children."""
    name: str
    sha256: bytes
    cls: type
    settings: dict
    children: list = field(default_factory=list)

    def table_bytes(self) -> int:
        return self.cls.table_bytes(self.settings) + sum(c.table_bytes() for c in self.children)

    def stream_limits(self) -> StreamLimits:
        return self.cls.stream_limits(self.settings, [c.stream_limits() for c in self.children])


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _sha(what: str, v) -> bytes:
    if not isinstance(v, str) or not _HEX64.fullmatch(v):
        raise SettingsError(what, "sha256 must be 64 hexadecimal digits")
    return bytes.fromhex(v)


def _description(what: str, d) -> tuple:
    """(name, sha256, settings) of a member's or an inner predictor's description."""
    if not isinstance(d, dict):
        raise SettingsError(what, "a predictor description must be an object")
    name, sha, settings = d.get("name"), d.get("sha256"), d.get("settings")
    if not limits.plain_name(name):
        raise SettingsError(what, f"predictor name {short(name)} is not a plain name")
    sha = _sha(what, sha)
    if not isinstance(settings, dict):
        raise SettingsError(what, "predictor settings must be an object")
    return name, sha, settings


def _node(name, sha256: bytes, settings, depth: int) -> Node:
    what = f"{name} predictor" if limits.plain_name(name) else "predictor"
    if not limits.plain_name(name):
        raise SettingsError(what, f"predictor name {short(name)} is not a plain name")
    if depth > limits.MAX_TREE_DEPTH:
        raise SettingsError(what, f"predictors nested deeper than {limits.MAX_TREE_DEPTH} levels")
    if not isinstance(settings, dict):
        raise SettingsError(what, "settings must be an object")
    cls = class_for(name, sha256)
    what = cls.what(name)
    own = dict(settings)
    arith = None
    if cls.ARITH is not None:
        accepted = cls.ARITH if isinstance(cls.ARITH, tuple) else (cls.ARITH,)
        arith = got = own.pop("arith", None)
        if got not in accepted:
            raise ModelMismatchError(cls.ARITH_REFUSED.format(
                name=name, got=short(got), arith=" or ".join(map(repr, accepted))))
    descriptions = []
    if cls.CHILDREN == "inner":
        descriptions = [_description(what, own.pop("inner", None))]
    elif cls.CHILDREN == "members":
        members = own.pop("members", None)
        if not isinstance(members, list) or not 2 <= len(members) <= limits.MAX_MEMBERS:
            raise SettingsError(what, f"an ensemble has 2..{limits.MAX_MEMBERS} members")
        descriptions = [_description(what, m) for m in members]
    own = cls.check_settings(name, own, header=True)
    if cls.CHILDREN is not None:
        # the recorded hash covers the children's names and hashes: checked before them
        if cls.identity_sha256(name, [(n, h) for n, h, _ in descriptions]) != sha256:
            whose = "model" if cls.CHILDREN == "inner" else "members"
            raise ModelMismatchError(f"this file's {what} identity does not match its {whose}")
    children = [_node(n, h, s, depth + 1) for n, h, s in descriptions]
    for c in children:
        if getattr(c.cls, "CODES_SEGMENTS", False):
            raise SettingsError(what, f"{c.name} codes its own segments: it cannot be wrapped "
                                      "or mixed")
        if getattr(c.cls, "CODES_BITS", False):
            raise SettingsError(what, f"{c.name} codes its own bits: it can only be the final "
                                      "stage")
    if isinstance(cls.ARITH, tuple):   # a class of several arithmetics builds the header's
        own["arith"] = arith
    return Node(name, sha256, cls, own, children)


def check(name, sha256: bytes, settings) -> Node:
    """The checked description of a predictor (as a header records it): SettingsError for
    anything outside the schemas or the limits, ModelMismatchError for a predictor or an
    arithmetic this version does not have or an identity that does not match."""
    node = _node(name, sha256, settings, 1)
    mem = node.table_bytes()
    if mem > limits.MAX_TABLE_BYTES:
        raise SettingsError(f"{name} predictor", f"its tables would take about {mem >> 20} MB "
                                                 f"(at most {limits.MAX_TABLE_BYTES >> 20} MB)")
    return node


def check_header(name, sha256, settings) -> Node:
    """check() for a file's header: every refusal is a ModelMismatchError."""
    if not isinstance(sha256, bytes) or len(sha256) != 32:
        raise ModelMismatchError("this file's model hash is not 32 bytes")
    try:
        return check(name, sha256, settings)
    except SettingsError as e:
        raise ModelMismatchError(f"this file's {e.what} settings are not understood "
                                 f"({e.detail})") from None


def check_predictor(pred: Predictor) -> Node:
    """The checked description of a predictor about to be written; ModelError when a decoder
    could not rebuild it (outside the limits, or not registered)."""
    i = pred.identity
    try:
        return check(i.name, i.model_sha256, i.settings)
    except SettingsError as e:
        raise ModelError(f"{e.what} settings are outside this format's limits ({e.detail})"
                         ) from None
    except ModelMismatchError as e:
        raise ModelError(f"predictor {i.name!r} cannot be written: {e}") from None


def stream_limits(pred: Predictor) -> StreamLimits:
    """The stream limits of a predictor (from its identity, as a decoder sees them)."""
    return check_predictor(pred).stream_limits()


# ---------------------------------------------------------------- rebuilding

@dataclass
class _Source:
    node: Node
    extra: list
    device: str

    def model_file(self) -> modelfiles.ModelRef:
        return modelfiles.ref_for_header(self.node.name, self.node.sha256, self.extra)


def rebuild(node: Node, extra: Iterable[str] = (), device: str = "auto") -> Predictor:
    """The predictor of a checked description, children first; ModelMismatchError naming what
    is missing or not understood. `extra`: model files or folders to look in first."""
    extra = list(extra)
    children = [rebuild(c, extra, device) for c in node.children]
    what = node.cls.what(node.name)
    try:
        return node.cls.from_identity(node.name, dict(node.settings), children,
                                      _Source(node, extra, device))
    except SettingsError as e:
        raise ModelMismatchError(f"this file's {e.what} settings are not understood "
                                 f"({e.detail})") from None
    except (TypeError, ValueError) as e:   # settings this version's class does not take
        raise ModelMismatchError(f"this file's {what} settings are not understood ({e})"
                                 ) from None


def predictor_for_header(name: str, sha256: bytes, settings: dict, extra: Iterable[str] = (),
                         device: str = "auto") -> Predictor:
    """Rebuilds the predictor a file was written with, or raises ModelMismatchError naming what
    is missing; the whole description is checked before any model file is looked up or any
    table allocated."""
    return rebuild(check_header(name, sha256, settings), extra, device)
