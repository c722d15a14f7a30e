"""dict -> dataclass with type checks and one-line errors naming the key (TOML configs and model cards)."""
from __future__ import annotations

import types
import typing
from dataclasses import MISSING, fields

_NAMES = {int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "table"}


def _check(value, hint, where: str, error):
    """``value`` converted to ``hint`` (int -> float allowed), else ``error`` naming ``where``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(value, inner[0], where, error) if len(inner) == 1 else value
    base = origin or hint
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base in _NAMES and (not isinstance(value, base) or (base in (int, float) and isinstance(value, bool))):
        raise error(f"{where}: expected {_NAMES[base]}, got {type(value).__name__} {value!r}")
    if base is list and args:
        return [_check(v, args[0], f"{where}[{i}]", error) for i, v in enumerate(value)]
    if base is dict and len(args) == 2:
        return {k: _check(v, args[1], f"{where}.{k}", error) for k, v in value.items()}
    return value


def from_dict(cls, data, where: str, error, skip: tuple = ()):
    """``cls(**data)`` after checking every key is a field of ``cls`` (those in ``skip`` and fields marked
    ``metadata={"resolved": True}`` are not settable) and every value has the field's type."""
    if not isinstance(data, dict):
        raise error(f"{where}: expected a table/object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.init and not f.metadata.get("resolved") and f.name not in skip}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    required = [f.name for f in fields(cls) if f.init and f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise error(f"{where}: missing key {missing[0]!r} (required: {', '.join(required)})")
    return cls(**{k: _check(v, hints[k], f"{where}.{k}", error) for k, v in data.items()})
