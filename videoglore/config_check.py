"""Plain data (YAML, checkpoints) → a tree of config dataclasses, every value checked on the way.

``build_section(cls, raw, source, prefix)`` builds dataclass ``cls`` from the mapping ``raw``,
checking each value against its field's type hint:

* ``int``, ``float``, ``str``, ``bool``, ``list[...]``, ``dict[...]``, unions and nested
  dataclasses; an int is accepted for a float, a whole float (``1e3``, ``16.0``) for an int,
  and the text of a number (``1e-3``, ``1E-3``: strings to YAML 1.1) for either;
* no float setting takes a non-finite value (``.inf``, ``nan``);
* ``Literal[...]`` enumerations, with "did you mean";
* ``Annotated[type, "RULE"]`` ranges, RULE like ``">= 1, <= 1024"`` (comma = and);
* a section's ``check()`` method: rules between its fields, as ``(key, what is wrong)`` pairs.

Each failure is one ``ConfigError`` line, ``SOURCE: section.key must be ..., got VALUE``, the
value quoted through ``bounded_repr`` (a few hundred characters, whatever its size).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import types
import typing
from typing import Annotated, Any

from data_prep.errors import bounded_repr
from videoglore.errors import ConfigError


def build_section(cls: type, raw: Any, source: str, prefix: str) -> Any:
    """Dataclass ``cls`` from the mapping ``raw`` (``prefix``: its dotted key, e.g. "train.")."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(str(key)[:100], names, n=1, cutoff=0.4)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            valid = ", ".join(names)
            raise ConfigError(
                f"{source}: unknown key {prefix}{key_text(key)}{hint} (valid keys here: {valid})"
            )
        values[key] = _check(hints[key], value, source, f"{prefix}{key}")
    obj = cls(**values)
    for key, problem in obj.check() if hasattr(obj, "check") else ():
        raise ConfigError(f"{source}: {prefix}{key} {problem}")
    return obj


def key_text(key: Any) -> str:
    """A key as messages show it: itself when it is a short string, else a bounded repr."""
    if isinstance(key, str) and len(key) <= 60:
        return key
    return bounded_repr(key, 60)


def _check(hint: Any, value: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return build_section(hint, value or {}, source, prefix=key + ".")
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *rules = typing.get_args(hint)
        value = _check(base, value, source, key)
        for rule in rules:
            if not _obeys(value, rule):
                rule_text = rule.replace(",", " and")
                raise ConfigError(f"{source}: {key} must be {rule_text}, got {bounded_repr(value)}")
        return value
    if origin is typing.Literal:
        return _check_choice(typing.get_args(hint), value, source, key)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} must be a list, got {bounded_repr(value)}")
        return [_check(item_hint, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {bounded_repr(value)}")
        return {
            _check(key_hint, k, source, key): _check(value_hint, v, source, f"{key}.{key_text(k)}")
            for k, v in value.items()
        }
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check(option, value, source, key)
            except ConfigError:
                pass
        raise ConfigError(f"{source}: {key} has the wrong type: {bounded_repr(value)}")
    if hint in (int, float):
        return _check_number(hint, value, source, key)
    if hint is str and value is None:
        return ""
    if hint in (str, bool) and not isinstance(value, hint):
        raise ConfigError(
            f"{source}: {key} must be {hint.__name__}, got {type(value).__name__} "
            f"{bounded_repr(value)}"
        )
    return value


def _check_choice(choices: tuple, value: Any, source: str, key: str) -> Any:
    if value is False and "off" in choices:  # YAML 1.1 reads a bare off as false
        value = "off"
    if value in choices and type(value) in {type(c) for c in choices}:
        return value
    shown = bounded_repr(value)
    names = [str(c) for c in choices]
    close = []
    if isinstance(value, str | int | float):
        close = difflib.get_close_matches(str(value)[:100], names, n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigError(f"{source}: {key} must be one of {', '.join(names)}, got {shown}{hint}")


def _check_number(hint: type, value: Any, source: str, key: str) -> int | float:
    """``value`` as an int or a finite float, from a number or the text of one."""
    if isinstance(value, str):
        value = _parse_number(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{source}: {key} must be {hint.__name__}, got {type(value).__name__} "
            f"{bounded_repr(value)}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: {key} must be a finite number, got {value}")
    if hint is float:
        try:
            return float(value)
        except OverflowError:  # an int past 1.8e308
            raise ConfigError(
                f"{source}: {key} must be a finite number, got {bounded_repr(value)}"
            ) from None
    if isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{source}: {key} must be int, got float {value!r}")
        return int(value)
    return value


def _parse_number(text: str) -> int | float | str:
    """The number ``text`` spells (``1e-3``, ``1E3``, ``.5``, ``1_000``, ``inf``), else ``text``.

    YAML 1.1 reads an exponent without a dot or a sign (``1e-3``, ``1e3``) as a string.
    """
    if len(text) > 100:
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def _obeys(value: float, rule: str) -> bool:
    """Whether ``value`` obeys a range rule such as ``">= 0, < 1"`` (comma = and)."""
    for part in rule.split(","):
        op, bound = part.split()
        if not _COMPARE[op](value, float(bound)):
            return False
    return True
