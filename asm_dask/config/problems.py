"""How a problem in a job file (or any file of a pydantic dataclass schema) is worded:
one formatter for every setting, from what each says it expects (:class:`Expect`)."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from pydantic import ValidationError


@dataclasses.dataclass(frozen=True)
class Expect:
    """What a setting takes, as an error message says it (``an integer >= 2``)."""

    text: str


def problem(key: str, expected: str, value: Any) -> str:
    """A setting's problem as every message says it: ``key: expected ..., got VALUE``."""
    return f"{key}: expected {expected}, got {shown(value)}"


def one_line(error: ValidationError, root: type, raw: Any = None) -> str:
    """Every problem pydantic found in a file of schema ``root``, on one line: each setting
    once, with what it expects (its :class:`Expect`, or the words of a validator of its
    own) and its value as ``raw`` (the file's content) holds it; unknown keys grouped by
    section."""
    problems: dict[tuple[str, ...], str | list[str]] = {}
    for item in error.errors(include_url=False):
        loc = tuple(str(part) for part in item["loc"])
        if item["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            unknown = problems.setdefault(("unknown",) + loc[:-1], [])
            unknown.append(loc[-1])
        elif item["type"] == "missing":
            problems.setdefault(loc, f"{_where(loc[:-1])}missing required key '{loc[-1]}'")
        elif item["type"] == "expected":  # a validator's own words, at a path below its key
            key = loc + tuple(item["ctx"]["path"])
            problems.setdefault(key, problem(".".join(key), item["ctx"]["expected"], item["ctx"]["value"]))
        else:
            key, expected = _setting(root, loc, item)
            if item["type"] == "value_error":  # a validator's reason: what it expects, or why not
                reason = str(item["ctx"]["error"])
                expected = reason.removeprefix("expected ") if reason.startswith("expected ") else \
                    f"{expected} ({reason})"
            value = _lookup(raw, key, item["input"])
            text = problem(".".join(key), expected, value) if key else f"expected {expected}, got {shown(value)}"
            # Of a union's errors (one per member), a validator's reason says the most.
            if key not in problems or item["type"] == "value_error":
                problems[key] = text
    return "; ".join(_unknown_keys(root, key[1:], names) if isinstance(names, list) else names
                     for key, names in problems.items())


def _setting(root: type, loc: tuple[str, ...], item: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """The setting an error is about (its key path) and what it expects: the error's own
    location may go deeper (a member of a union, an item of a list)."""
    section: Any = root
    for depth, name in enumerate(loc):
        if name.isdigit():
            continue
        hints = get_type_hints(section, include_extras=True)
        if name not in hints:
            break
        expect = next((m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Expect)), None)
        if expect is not None:
            return loc[:depth + 1], expect.text
        section = _section_type(hints[name])
        if section is None:
            break
    if item["type"] == "dataclass_type":  # a section itself
        if loc == ("features",):
            return loc, "a mapping, a path, or a list of them (tables joined by cell)"
        if loc[:2] == ("features", "years"):
            return loc, "a path, a list of tables joined by cell, or a mapping"
        takes_path = loc == ("labels",) or loc[:2] == ("features", "join")
        return loc, "a mapping" + (" or a path" if takes_path else "")
    return loc, item["msg"].strip().splitlines()[0]  # pydantic's own words, still on one line


def _lookup(raw: Any, key: tuple[str, ...], default: Any) -> Any:
    """The value at ``key`` in the job file's content (``labels: path`` read as
    ``labels: {path: path}``); ``default`` where there is none."""
    value = raw
    for name in key:
        if isinstance(value, str) and name == "path":
            continue
        if not isinstance(value, dict) or name not in value:
            return default
        value = value[name]
    return value


def _section_type(hint: Any) -> type | None:
    """The dataclass a field holds (through ``Annotated``, ``Optional`` and tuples of
    them), if any."""
    while get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    if get_origin(hint) in (tuple, dict):  # a list of sections, or a mapping of keys to sections
        return _section_type(get_args(hint)[-1 if get_origin(hint) is dict else 0])
    candidates = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def _unknown_keys(root: type, section: tuple[str, ...], keys: list[str]) -> str:
    cls: Any = root
    for name in section:
        if not name.isdigit():  # an item of a list of sections is of the list's type
            cls = _section_type(get_type_hints(cls, include_extras=True)[name])
    known = sorted(f.name for f in dataclasses.fields(cls))
    return f"{_where(section)}unknown key(s) {sorted(keys)}; known keys: {known}"


def _where(loc: tuple[str, ...]) -> str:
    return ".".join(loc) + ": " if loc else ""


def listed(names: Sequence[str], most: int = 5) -> str:
    """The first ``most`` of ``names``, and how many more there are: a list that fits one line."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def shown(value: Any) -> str:
    """A value as the job file wrote it, shortened to fit one line; an object no file
    could hold (a DataFrame given in code) by its type."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if not isinstance(value, (str, int, float, list, tuple, dict)):
        kind = type(value)
        return f"a {kind.__module__.split('.')[0]}.{kind.__qualname__}"
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."
