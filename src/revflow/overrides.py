"""One parser for config overrides: ``revflow train --resume RUN_DIR --agent.<field> VALUE``,
``revflow sweep --set KEY=VALUE`` / ``--grid KEY=V1,V2`` and the values of sweep files.

A value is read *by the type of the field it sets*, never guessed from its text, so the same
text means the same thing everywhere (and what ``revflow train --agent.<field> VALUE``
accepts on the command line):

- ``float``: any Python float literal (``3e-4``, ``1E6``, ``0.5``, ``inf``); YAML's ``3e-4``
  (a string in YAML 1.1) and integers are numbers too.
- ``int``: an integer, or a number in scientific notation with an integral value (``1e5``).
- ``bool``: ``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``, any case).
- ``X | None``: ``None``, ``none``, ``null`` or ``~`` give None.
- ``Literal[...]``: one of the choices (the error lists them).
- ``tuple[X, ...]``: a YAML list (``[256, 256]``) or comma-separated items.
- unions such as ``float | str``: the first member that accepts the text, ``str`` last.

Errors are :class:`OverrideError` (a ``ValueError``) naming the field, the value and what was
expected, in one line.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["OverrideError", "apply_overrides", "coerce", "field_types", "split_values"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~"}


class OverrideError(ValueError):
    """An override names no field or gives a value its field's type cannot take."""


def _members(annotation: Any) -> tuple[list[Any], bool]:
    """(non-None members, optional) of a union; ``[annotation], False`` otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return [a for a in args if a is not type(None)], type(None) in args
    return [annotation], False


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(c) for c in typing.get_args(annotation))
    if typing.get_origin(annotation) is tuple:
        return "a list"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().replace("_", ""))
        except ValueError:
            return None
    return None


def _one(value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` (a non-union type); raises ``ValueError`` if it cannot be."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        for choice in typing.get_args(annotation):
            if value == choice or (isinstance(value, str) and value.strip() == str(choice)):
                return choice
        raise ValueError
    if origin is tuple:
        args = typing.get_args(annotation)
        if isinstance(value, str):
            value = split_values(value.strip().removeprefix("[").removesuffix("]"))
        if not isinstance(value, list | tuple):
            raise ValueError
        elem = args[0] if args else Any
        return tuple(coerce(v, elem, "item") for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _number(value)
        if number is None or not math.isfinite(number) or number != int(number):
            raise ValueError
        return int(number)
    if annotation is float:
        number = _number(value)
        if number is None:
            raise ValueError
        return number
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ValueError
    if annotation is Any:
        return value
    raise ValueError


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """``value`` (a command-line string, or a YAML / TOML value) as a field of type
    ``annotation``; :class:`OverrideError` names ``name`` if it cannot be one."""
    members, optional = _members(annotation)
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        if optional:
            return None
        if value is None:
            raise OverrideError(f"{name}: None is not allowed (expected {_describe(annotation)})")
        # the text "none" may still be a choice or a string of this field
    # str last: "0.5" for a ``float | str`` field is the number.
    for member in sorted(members, key=lambda m: m is str):
        try:
            return _one(value, member)
        except (ValueError, TypeError, OverrideError):
            continue
    expected = " or ".join(_describe(m) for m in members) + (" or None" if optional else "")
    raise OverrideError(f"{name}: expected {expected}, got {value!r}")


def split_values(text: str) -> list[str]:
    """``"a,[1,2],b"`` -> ``["a", "[1,2]", "b"]``: commas split, except inside brackets."""
    items, depth, current = [], 0, ""
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items.append(current.strip())
    return items


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every init field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def apply_overrides(cls: type, base: Any, overrides: Mapping[str, Any], what: str) -> Any:
    """``dataclasses.replace(base, **overrides)`` with every value coerced to its field's type
    (``-`` in names read as ``_``); :class:`OverrideError` for an unknown field or bad value."""
    types_ = field_types(cls)
    values = {}
    for key, value in overrides.items():
        name = key.replace("-", "_")
        if name not in types_:
            raise OverrideError(f"{what} has no field {key!r}; fields: {', '.join(sorted(types_))}")
        values[name] = coerce(value, types_[name], f"{what}.{name}")
    return dataclasses.replace(base, **values)
