"""Build the alpha stages' frozen parameter dataclasses from plain dicts (params.yaml sections).

One strict loader for every params class: unknown keys are rejected by name (a typo in
params.yaml must fail, not silently fall back to a default), lists become tuples (so the
dataclasses stay hashable and immutable) and numbers are checked against the field's type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

from quantlake.contracts import ContractError


class ParamsError(ContractError):
    """A params section that does not fit its dataclass; the message names section and key."""


def from_plain_dict(cls: type, data: Any, section: str):
    """An instance of dataclass `cls` from mapping `data`; missing keys take the defaults."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ParamsError(f"{section}: expected a mapping of parameters, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise ParamsError(
            f"{section}: unknown parameter(s) {', '.join(repr(k) for k in unknown)} "
            f"(known: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(hints[name], value, f"{section}.{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{section}: {exc}") from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    nested = getattr(hint, "from_params", None)
    if nested is not None and dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else nested(value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(args[0], value, where)
    if origin is tuple:
        return _coerce_tuple(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ParamsError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _coerce_tuple(hint: Any, value: Any, where: str) -> tuple:
    args = typing.get_args(hint)
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, Mapping)):
        raise ParamsError(f"{where}: expected a list, got {value!r}")
    if len(args) != 2 or args[1] is not Ellipsis:  # a fixed-length tuple such as (name, weight)
        if isinstance(value, Mapping) or len(value) != len(args):
            raise ParamsError(f"{where}: expected a list of {len(args)} items, got {value!r}")
        return tuple(_coerce(h, v, f"{where}[{i}]") for i, (h, v) in enumerate(zip(args, value)))
    item_hint = args[0]
    pair = typing.get_origin(item_hint) is tuple
    if pair and isinstance(value, Mapping):
        # a {name: number} mapping stored as sorted (name, number) pairs
        key_hint, val_hint = typing.get_args(item_hint)
        return tuple(
            (_coerce(key_hint, k, where), _coerce(val_hint, v, f"{where}.{k}")) for k, v in sorted(value.items())
        )
    if isinstance(value, Mapping):
        raise ParamsError(f"{where}: expected a list, got a mapping {dict(value)!r}")
    return tuple(_coerce(item_hint, v, f"{where}[{i}]") for i, v in enumerate(value))


def check(condition: bool, message: str) -> None:
    """Raise a ParamsError with `message` unless `condition` holds (used in __post_init__)."""
    if not condition:
        raise ParamsError(message)
