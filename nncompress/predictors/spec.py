"""Predictor specs: the one grammar for choosing a predictor when compressing.

    spec    := members [ "+" stage ] [ ":" de ]
    members := member ( "+" member )*        at most limits.MAX_MEMBERS; two or more are an
                                             ensemble, mixed online (the "gmix" mixer)
    member  := a built-in predictor (ctx1, ctx2, order0, bcm) [ settings ], a model name (NAME.pt
               in the model folders, modelfiles.model_dirs) or a model file's path (a path to
               an existing file is always one member, "+" and ":" included)
    stage   := a final stage that refines whatever the members predict: "bmix" (binary context
               mixing that codes its own bits), "match" (the long-range match model and its
               SSE) or "cm" (the byte-level context-mixing stage) [ settings ]
    settings:= "[" key "=" integer ( "," key "=" integer )* "]"   settings of a built-in
               predictor or a stage in place of its defaults, checked against its schema (for
               example ctx2[hash_bits=17] or cm[nibbles=1]); the header records them
    de      := the FS-LSTM members' dynamic evaluation: "static" (off), "de" (on, the model's
               tuned settings), "de-out" (output layer only), "de-full" (every weight)

Without ":de" the FS-LSTM adapts when its model file carries the statistics dynamic evaluation
needs. A dynamic_eval argument (the API's, the CLI's --dynamic-eval and --de-* options) replaces
the suffix: None, False, True or a dict of overrides {"scope": "out"|"full", "segment": steps,
"lr": float, "decay": float, "eps": float}. The compression levels (nncompress/levels.py) are
presets written in this grammar. parse_spec() gives a Spec; build_predictor() builds it.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..errors import ModelError
from ..format import limits
from . import modelfiles, registry
from .base import Predictor
from .schema import SettingsError

DEFAULT_SPEC = "fslstm-medium-i8-v1+bmix"   # the predictor of level 6, the default
ENSEMBLE_SEP = "+"
DE_SEP = ":"
# ":de" suffixes and the dynamic_eval value each stands for
DE_SUFFIXES = {"static": False, "de": True, "de-out": {"scope": "out"},
               "de-full": {"scope": "full"}}
ENSEMBLE_MIXER = "gmix"                   # the mixer of new ensembles

DynamicEval = Union[None, bool, dict]
_SETTINGS = re.compile(r"([^\[\]]+)\[([^\[\]]*)\]")
_ITEM = re.compile(r"\s*([a-z_][a-z0-9_]*)\s*=\s*(-?[0-9]+)\s*")


def split_settings(token: str) -> tuple:
    """A member's or a stage's name and the settings written after it (NAME[k=v,...]);
    ModelError for malformed settings."""
    m = _SETTINGS.fullmatch(token)
    if m is None or _is_file(token):
        if "[" in token or "]" in token:
            if not _is_file(token):
                raise ModelError(f"{token!r}: settings are written NAME[key=integer,...]")
        return token, {}
    settings = {}
    for item in m.group(2).split(","):
        kv = _ITEM.fullmatch(item)
        if kv is None:
            raise ModelError(f"{token!r}: settings are written NAME[key=integer,...]")
        if kv.group(1) in settings:
            raise ModelError(f"{token!r}: {kv.group(1)} is given twice")
        settings[kv.group(1)] = int(kv.group(2))
    return m.group(1), settings


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class Spec:
    members: tuple            # names or paths, in order
    stage: Optional[str] = None
    dynamic_eval: DynamicEval = None

    def __str__(self) -> str:
        text = ENSEMBLE_SEP.join(self.members + ((self.stage,) if self.stage else ()))
        for suffix, value in DE_SUFFIXES.items():
            if self.dynamic_eval is not None and value == self.dynamic_eval:
                return f"{text}{DE_SEP}{suffix}"
        return text

    @property
    def label(self) -> str:
        """A short description for tables: member names (a path's file name without .pt),
        the stage and the dynamic evaluation asked for."""
        names = [Path(m).stem if modelfiles.is_path(m) else m for m in self.members]
        text = ENSEMBLE_SEP.join(names + ([self.stage] if self.stage else []))
        de = self.dynamic_eval
        if isinstance(de, dict):
            text += " dyn-eval " + " ".join(([str(de["scope"])] if "scope" in de else [])
                                            + [f"{k}={v}" for k, v in sorted(de.items())
                                               if k != "scope"])
        elif de is not None:
            text += " dyn-eval" if de else " static"
        return text

    def with_dynamic_eval(self, dynamic_eval: DynamicEval) -> "Spec":
        """This spec with `dynamic_eval` in place of its own (None keeps its own)."""
        if dynamic_eval is None:
            return self
        return dataclasses.replace(self, dynamic_eval=dynamic_eval)


def parse_spec(text: Optional[str] = None, dynamic_eval: DynamicEval = None) -> Spec:
    """The Spec of `text` (None or "": DEFAULT_SPEC); ModelError for a malformed one.
    `dynamic_eval`, when not None, replaces the spec's ":de" suffix."""
    if isinstance(text, Spec):
        return text.with_dynamic_eval(dynamic_eval)
    if text is not None and not isinstance(text, str):
        raise TypeError(f"a predictor spec is a string, not {type(text).__name__}")
    text = text or DEFAULT_SPEC
    body, de = text, None
    if not _is_file(text) and DE_SEP in text:
        head, _, tail = text.rpartition(DE_SEP)
        if tail in DE_SUFFIXES:
            value = DE_SUFFIXES[tail]
            body, de = head, dict(value) if isinstance(value, dict) else value
        elif "/" not in tail and ENSEMBLE_SEP not in tail:
            raise ModelError(f"{text!r}: unknown dynamic-evaluation option {DE_SEP}{tail} (known: "
                             f"{', '.join(DE_SEP + s for s in DE_SUFFIXES)})")
    parts = [body] if _is_file(body) else body.split(ENSEMBLE_SEP)
    if not all(parts):
        raise ModelError(f"{text!r}: empty member (specs are written A, A+B or A+B+stage)")
    stages = registry.stage_names()
    names = [split_settings(p)[0] for p in parts]
    stage = parts.pop() if len(parts) > 1 and names[-1] in stages else None
    names = names[:len(parts)]
    for name in stages:
        if name in names:
            raise ModelError(f"{text!r}: {name!r} is a final stage and can only end a spec "
                             f"(for example ctx1+{name})")
    if len(parts) > limits.MAX_MEMBERS:
        raise ModelError(f"{text!r}: an ensemble has at most {limits.MAX_MEMBERS} members, "
                         f"not {len(parts)}")
    return Spec(tuple(parts), stage, de).with_dynamic_eval(dynamic_eval)


def ensemble(members: list) -> str:
    """The spec text of an ensemble of these members (the CLI's --ensemble A,B)."""
    members = [m.strip() for m in members if m.strip()]
    if len(members) < 2:
        raise ModelError("an ensemble needs at least two members")
    return str(parse_spec(ENSEMBLE_SEP.join(members)))


def available() -> list[str]:
    """The built-in predictors' names, then the models in the model folders."""
    builtin = registry.builtin_names()
    return builtin + [n for n in modelfiles.model_names() if n not in builtin]


def resolve(member: str) -> modelfiles.ModelRef:
    """A member of a spec: a built-in predictor (no model file) or a model file, checked
    (settings written after a built-in predictor's name are left to build_member)."""
    name, settings = split_settings(member)
    if name in registry.builtin_names():
        return modelfiles.ModelRef(name)
    if settings:
        raise ModelError(f"{member!r}: settings can be given to built-in predictors and stages "
                         f"only ({', '.join(registry.builtin_names())})")
    if member in registry.builtin_names():
        return modelfiles.ModelRef(member)
    try:
        return modelfiles.resolve(member)
    except ModelError:
        if modelfiles.is_path(member):
            raise
        raise ModelError(f"unknown model {member!r}; available: {', '.join(available())}"
                         ) from None


def model_files(spec: Union[str, Spec, None]) -> list[modelfiles.ModelRef]:
    """The members of a spec, resolved (built-in ones without a path)."""
    return [resolve(m) for m in parse_spec(spec).members]


def _checked(cls, name: str, settings: dict) -> dict:
    try:
        return cls.check_settings(name, settings)
    except SettingsError as e:
        raise ModelError(f"{name}[...]: {e.detail}") from None


def build_member(ref: modelfiles.ModelRef, device: str = "auto",
                 dynamic_eval: DynamicEval = None, settings: Optional[dict] = None) -> Predictor:
    """One member: a built-in predictor with `settings` in place of its defaults, or a model
    file's predictor (`dynamic_eval` concerns only that)."""
    if ref.builtin:
        cls = registry.get(ref.name)
        try:
            return cls.from_identity(ref.name, _checked(cls, ref.name, settings or {}), [], None)
        except ValueError as e:          # a combination of settings the class refuses
            raise ModelError(f"{ref.name}[...]: {e}") from None
    return registry.model_file_class().from_file(ref, device=device, dynamic_eval=dynamic_eval)


def build_predictor(spec: Union[str, Spec, None] = None, device: str = "auto",
                    dynamic_eval: DynamicEval = None) -> Predictor:
    """The predictor for compressing with `spec` (a Spec or its text; None: DEFAULT_SPEC),
    checked against the limits that decoding applies."""
    spec = parse_spec(spec, dynamic_eval)
    refs = [resolve(m) for m in spec.members]
    if spec.dynamic_eval and all(r.builtin for r in refs):
        raise ModelError(f"dynamic evaluation needs an FS-LSTM model; {str(spec)!r} has none "
                         "(the built-in context models adapt by counting anyway)")
    preds = [build_member(r, device, spec.dynamic_eval, split_settings(m)[1])
             for r, m in zip(refs, spec.members)]
    pred = preds[0] if len(preds) == 1 else registry.get(ENSEMBLE_MIXER)(preds)
    if spec.stage:
        name, settings = split_settings(spec.stage)
        cls = registry.get(name)
        pred = cls(pred, name=name, **_checked(cls, name, settings))
    registry.check_predictor(pred)
    return pred
