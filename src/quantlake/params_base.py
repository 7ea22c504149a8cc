"""The one strict idiom every params section is built with (used by `quantlake.params`).

A section is a frozen dataclass: its fields (with their defaults, defined there once) are the
keys of the section, `__post_init__` checks the ranges with `check`. `from_plain_dict` builds
one from a plain mapping (a params.yaml section): unknown keys are rejected by their full
name with the closest known key suggested (a typo must fail, not silently fall back to a
default), lists become tuples (so sections stay hashable and immutable), numbers, strings,
booleans and dates are checked against the field's type, nested sections are built the same
way. Every problem of the mapping is collected and reported in one `ParamsError`.

This module imports nothing but `contracts`, so any module can define a section without an
import cycle with the model in `quantlake.params`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import difflib
import types
import typing
from typing import Any, ClassVar, Iterator, Mapping, Self

from quantlake.contracts import ContractError, parse_date

# While a section is being built, `check` appends here instead of raising (so one error
# lists every failed range check); outside, it raises at once.
_COLLECTING: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("params_problems", default=None)


class ParamsError(ContractError):
    """Params that do not fit their sections; `problems` lists one line per offending key."""

    def __init__(self, problems: list[str] | str, *, source: str = ""):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        prefix = f"{source}: " if source else ""
        lines = [f"{prefix}{p}" for p in self.problems]
        if len(lines) > 1:
            lines.insert(0, f"{source or 'params'}: {len(lines)} problems")
        super().__init__("\n  ".join(lines))


class Section:
    """Base of every params section (a frozen dataclass): `SECTION` is its full name in
    params.yaml (e.g. "data.binance"), `from_params` builds it from that section's mapping."""

    SECTION: ClassVar[str] = ""

    @classmethod
    def from_params(cls, d: Any) -> Self:
        return from_plain_dict(cls, d, cls.SECTION)


def check(condition: bool, message: str) -> None:
    """Record (while a section is being built) or raise a ParamsError with `message` unless
    `condition` holds. Used in `__post_init__`; the message names the full key."""
    if condition:
        return
    collected = _COLLECTING.get()
    if collected is None:
        raise ParamsError(message)
    collected.append(message)


@contextlib.contextmanager
def _collecting(problems: list[str]) -> Iterator[None]:
    token = _COLLECTING.set(problems)
    try:
        yield
    finally:
        _COLLECTING.reset(token)


def from_plain_dict(cls: type, data: Any, section: str):
    """An instance of dataclass `cls` from mapping `data`; missing keys take the defaults.

    Raises one ParamsError listing every unknown key, wrong type and failed range check."""
    problems: list[str] = []
    out = build(cls, data, section, problems)
    if problems or out is None:
        raise ParamsError(problems or [f"{section}: invalid"])
    return out


def coerce_section(cls: type, value: Any, section: str | None = None):
    """`value` if it already is a `cls`, else `cls` built from the mapping `value`."""
    if isinstance(value, cls):
        return value
    return from_plain_dict(cls, value, section or getattr(cls, "SECTION", cls.__name__))


def build(cls: type, data: Any, section: str, problems: list[str], *, exclude: tuple[str, ...] = (), extra: Mapping[str, Any] | None = None):
    """Like `from_plain_dict`, but appends problems to `problems` and returns None on any.

    `exclude` names fields that are not keys of this section; `extra` gives values for them."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append(f"{section}: expected a mapping of parameters, got {type(data).__name__} {data!r}")
        return None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in exclude}
    hints = typing.get_type_hints(cls)
    before = len(problems)
    values = {}
    for key, value in data.items():
        where = f"{section}.{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(sorted(fields))}"
            problems.append(f"{where}: unknown key ({hint})")
            continue
        try:
            values[key] = _coerce(hints[key], value, where, problems)
        except ParamsError as exc:
            problems.extend(exc.problems)  # the field keeps its default, so the range checks still run
    found: list[str] = []
    try:
        with _collecting(found):
            out = cls(**values, **(extra or {}))
    except ContractError as exc:
        problems.extend(found + (exc.problems if isinstance(exc, ParamsError) else [f"{section}: {exc}"]))
        return None
    except (TypeError, ValueError, ArithmeticError) as exc:
        # a later check tripped over a value an earlier check already rejected
        problems.extend(found or [f"{section}: {exc}"])
        return None
    problems.extend(found)
    return None if found or len(problems) > before else out


def _coerce(hint: Any, value: Any, where: str, problems: list[str]) -> Any:
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        built = build(hint, value, where, problems)
        if built is None:
            raise ParamsError([])  # the problems are recorded already
        return built
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(args[0], value, where, problems)
    if origin is tuple:
        return _coerce_tuple(hint, value, where, problems)
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
    if hint is dt.date:
        try:
            return parse_date(value, field=where)
        except ContractError as exc:
            raise ParamsError(str(exc)) from None
    return value


def _coerce_tuple(hint: Any, value: Any, where: str, problems: list[str]) -> tuple:
    args = typing.get_args(hint)
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, Mapping)):
        raise ParamsError(f"{where}: expected a list, got {value!r}")
    if len(args) != 2 or args[1] is not Ellipsis:  # a fixed-length tuple such as (name, weight)
        if isinstance(value, Mapping) or len(value) != len(args):
            raise ParamsError(f"{where}: expected a list of {len(args)} items, got {value!r}")
        return tuple(_coerce(h, v, f"{where}[{i}]", problems) for i, (h, v) in enumerate(zip(args, value)))
    item_hint = args[0]
    pair = typing.get_origin(item_hint) is tuple
    if pair and isinstance(value, Mapping):
        # a {name: number} mapping stored as sorted (name, number) pairs
        key_hint, val_hint = typing.get_args(item_hint)
        return tuple(
            (_coerce(key_hint, k, where, problems), _coerce(val_hint, v, f"{where}.{k}", problems))
            for k, v in sorted(value.items())
        )
    if isinstance(value, Mapping):
        raise ParamsError(f"{where}: expected a list, got a mapping {dict(value)!r}")
    return tuple(_coerce(item_hint, v, f"{where}[{i}]", problems) for i, v in enumerate(value))


def to_plain(obj: Any, *, exclude: tuple[str, ...] = ()) -> Any:
    """A section as plain JSON-able data (tuples become lists, dates ISO strings), for hashing."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init and f.name not in exclude}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj
