"""Reading a settings file: its YAML, its values as YAML holds them, its paths, and its
check against a schema with every problem on one line."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from ..errors import InputError
from .problems import one_line


def read_yaml(path: Path, what: str, missing: type[Exception] = InputError,
              invalid: type[Exception] = InputError) -> Any:
    """A YAML file's content; ``missing`` or ``invalid`` raised with a one-line message."""
    if path.is_dir():
        raise invalid(f"{path}: is a folder, expected a {what}")
    if not path.is_file():
        raise missing(f"{path}: {what} not found")
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeysLoader)
    except yaml.YAMLError as exc:
        raise invalid(f"{path}: not valid YAML ({_first_line(exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid(f"{path}: cannot read {what} ({_first_line(exc)})") from None


class _UniqueKeysLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (which YAML forbids):
    PyYAML would keep the last silently, and a second ``output:`` would send a run
    elsewhere unnoticed."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in lines:
                    where = f"line {line}" if lines[key] == line else f"lines {lines[key]} and {line}"
                    raise yaml.constructor.ConstructorError(problem=f"{key!r} is given twice, at {where}")
                lines[key] = line
            except TypeError:  # a key that cannot be one (a list): YAML's own error follows
                continue
        return super().construct_mapping(node, deep)


def validated(schema: type, raw: Any, base: str | os.PathLike, source: str, keys: str) -> Any:
    """``raw`` (a file's content, with paths relative to ``base``) checked against the
    dataclass ``schema``; every problem on one line of :class:`InputError` naming ``source``."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping with {keys}")
    raw = plain(raw)
    try:
        return _adapter(schema).validate_python(raw, context={"base": Path(base)})
    except ValidationError as error:
        raise InputError(f"{source}: {one_line(error, schema, raw)}") from None


_adapter = functools.cache(TypeAdapter)


def plain(value: Any) -> Any:
    """Settings given in code as YAML holds them: paths as text, NumPy values as Python's."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    return value


def resolve_path(value: Any, base: Path) -> str:
    """Resolve a local path against ``base``; URLs (``s3://...``) pass through unchanged."""
    text = str(value)
    if "://" in text:
        return text
    path = base / os.path.expanduser(text)
    try:
        return str(path.resolve())
    except (RuntimeError, OSError):  # a symbolic link loop: check_paths names it
        return os.path.abspath(path)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
