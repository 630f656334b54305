"""Settings schemas: each predictor class declares the settings it records in a header.

A Schema maps each key to a Setting (its type, default and range). ``Schema.check`` validates a
settings dict (from a header, or a constructor's arguments) and returns it with the defaults
filled in; anything else raises SettingsError, before any table is allocated. The same schema
therefore bounds what a decoder accepts and what a writer may write.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import ModelError

_REQUIRED = object()


class SettingsError(ModelError, ValueError):
    """Settings outside a predictor's schema; `what` names the predictor part (for messages)."""

    def __init__(self, what: str, detail: str):
        super().__init__(f"{what} settings: {detail}")
        self.what = what
        self.detail = detail


def short(v) -> str:
    """repr(v), cut to 40 characters (values in messages come from untrusted headers)."""
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


@dataclass(frozen=True)
class Setting:
    """One setting: `kind` "int", "num" (finite int or float), "str" or "object" (a dict, checked
    by its predictor); an inclusive range lo..hi (`lo_open`: lo itself excluded) or `choices`;
    `default` fills it in when absent (no default: it must be given). `required`: a header must
    give it even when it has a default (constructors still use the default)."""
    kind: str = "int"
    default: Any = _REQUIRED
    lo: Optional[float] = None
    hi: Optional[float] = None
    choices: Optional[tuple] = None
    lo_open: bool = False
    required: bool = False

    def check(self, what: str, key: str, v):
        if self.kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise SettingsError(what, f"{key} must be an integer, not {short(v)}")
        elif self.kind == "num":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SettingsError(what, f"{key} must be a finite number, not {short(v)}")
        elif self.kind == "str":
            if not isinstance(v, str):
                raise SettingsError(what, f"{key} must be a string, not {short(v)}")
        elif self.kind == "object":
            if not isinstance(v, dict):
                raise SettingsError(what, f"{key} must be an object, not {short(v)}")
        if self.choices is not None and v not in self.choices:
            raise SettingsError(what, f"{key} must be one of {list(self.choices)}, not {short(v)}")
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo) \
                or self.hi is not None and v > self.hi:
            if self.kind == "int":
                raise SettingsError(what, f"{key} must be in {self.lo}..{self.hi}, not {v}")
            raise SettingsError(what, f"{key} must be in {'(' if self.lo_open else '['}{self.lo}, "
                                      f"{self.hi}], not {v}")
        return v


def integer(lo: int, hi: int, default=_REQUIRED, required: bool = False) -> Setting:
    return Setting("int", default, lo, hi, required=required)


def number(lo: float, hi: float, default=_REQUIRED, lo_open: bool = False) -> Setting:
    return Setting("num", default, lo, hi, lo_open=lo_open)


def choice(*values, default=_REQUIRED, required: bool = False) -> Setting:
    kind = "str" if all(isinstance(v, str) for v in values) else "int"
    return Setting(kind, default, choices=tuple(values), required=required)


def optional_object() -> Setting:
    """A nested object that may be absent (no default); its predictor checks its contents."""
    return Setting("object", None)


class Schema:
    """The settings of one predictor: key -> Setting."""

    def __init__(self, fields: dict[str, Setting]):
        self.fields = dict(fields)

    def defaults(self) -> dict:
        return {k: f.default for k, f in self.fields.items()
                if f.default is not _REQUIRED and f.default is not None}

    def check(self, what: str, settings: dict, header: bool = False) -> dict:
        """`settings` validated and completed with the defaults (a new dict); SettingsError
        otherwise. `header`: the settings come from a file, so required settings must be there."""
        if not isinstance(settings, dict):
            raise SettingsError(what, "settings must be an object")
        unknown = set(settings) - set(self.fields)
        if unknown:
            keys = [k if len(k) <= 40 else k[:37] + "..." for k in sorted(map(str, unknown))[:5]]
            raise SettingsError(what, f"unknown settings {keys}")
        out = {}
        for key, f in self.fields.items():
            if key in settings:
                out[key] = f.check(what, key, settings[key])
            elif f.default is _REQUIRED or (header and f.required):
                raise SettingsError(what, f"{key} is missing")
            elif f.default is not None:
                out[key] = f.default
        return out

    def replace(self, **fields: Setting) -> "Schema":
        """This schema with some settings replaced (for example other defaults)."""
        return Schema({**self.fields, **fields})
