"""Configs from JSON: one reader for every config dataclass (TrainConfig, OCZSSConfig, ...).

Every config is a frozen dataclass that checks its values in `__post_init__`; `from_dict` adds what JSON cannot
promise: no unknown field, and every value of its field's type (a JSON list becomes a tuple where the field is
one). A wrong type is an error naming the field, the value and the type it needs.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from oczss.errors import OCZSSError


def from_dict(cls, data: dict, what: str):
    """`cls(**data)` after checking field names and types; `what` names the source in errors (e.g. a file)."""
    if not isinstance(data, dict):
        raise OCZSSError(f"{what}: expected a JSON object of {cls.__name__} fields, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise OCZSSError(f"{what}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    values = {}
    for name, value in data.items():
        ok, converted = _coerce(value, hints[name])
        if not ok:
            raise OCZSSError(f"{what}: field {name!r} = {value!r} is not of type {_name(hints[name])}")
        values[name] = converted
    return cls(**values)


def _coerce(value, hint):
    """(fits, value converted to the hint's container type)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            ok, converted = _coerce(value, option)
            if ok:
                return True, converted
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is typing.Any:
        return True, value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False, value
        item = args[0] if args else typing.Any
        converted = []
        for v in value:
            ok, c = _coerce(v, item)
            if not ok:
                return False, value
            converted.append(c)
        return True, (tuple if origin is tuple else list)(converted)
    if origin is dict or hint is dict:
        return isinstance(value, dict), value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), float(value) if isinstance(
            value, (int, float)) and not isinstance(value, bool) else value
    if hint is str:
        return isinstance(value, str), value
    return isinstance(value, hint), value


def _name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
