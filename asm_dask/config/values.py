"""The kinds of value every settings file shares (job files, featurize files): numbers
as YAML writes them, paths resolved against the file's folder, sections that take their
defaults, and problems worded below a setting's key."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from .problems import Expect
from .reading import resolve_path

#: a number in exponent notation: YAML 1.1 reads ``1e12`` and ``1.0e12`` (no decimal
#: point, or no sign in the exponent) as text, YAML 1.2 and every reader as a number
EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _spelled(value: Any) -> Any:
    """Exponent text is the number it spells; an integer beyond any float is not finite."""
    if isinstance(value, str) and EXPONENT.fullmatch(value):
        return float(value)
    if type(value) is int and abs(value) > 2**1023:
        return float("inf")
    return value


def _whole(value: Any) -> Any:
    """A whole number written as a float (``5.0``) is that integer."""
    value = _spelled(value)
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: a number kept as written (``1`` stays ``1``, not ``1.0``), so that the run key of a
#: job file does not change; booleans are not numbers
Number = Annotated[StrictInt | StrictFloat, BeforeValidator(_spelled), Field(allow_inf_nan=False)]
Whole = Annotated[StrictInt, BeforeValidator(_whole)]
Text = Annotated[StrictStr, Field(min_length=1)]


def _input_path(value: str, info: ValidationInfo) -> str:
    """A file to read: a local path, resolved against the job file's folder, or a URL."""
    if "::" in value and "://" not in value:
        # fsspec (which fingerprints and reads inputs) splits 'a::b' into a chain of URLs,
        # as in 'simplecache::s3://...', so such a local file would not be found.
        raise ValueError("expected a local path without '::' (fsspec reads 'a::b' as a chain of URLs; rename the "
                         "file or its folder)")
    return _resolved(value, info)


def folder_path(value: str | None, info: ValidationInfo) -> str | None:
    """A folder to write: a local path, resolved against the job file's folder, or an
    fsspec URL (``s3://bucket/run``). An empty ``store_path`` has always meant "beside the
    features file", like null."""
    if value and "::" in value:
        raise ValueError("expected a folder path or URL without '::' (fsspec reads 'a::b' as a chain of URLs)")
    return _resolved(value, info) if value else value


def _resolved(value: str, info: ValidationInfo) -> str:
    """Resolved against the job file's folder when a job file is read; as given when a
    section is built in code."""
    return resolve_path(value, info.context["base"]) if info.context else value


InputPath = Annotated[Text, AfterValidator(_input_path), Expect("a path or URL")]


def expected_at(path: tuple[str, ...], value: Any, expected: str) -> PydanticCustomError:
    """A problem below a setting's key, at ``path`` (``model.estimators.random_forest``),
    for a setting whose structure is its own; :func:`~asm_dask.config.problems.one_line` words it as the others."""
    return PydanticCustomError("expected", "expected {expected}", {"expected": expected, "path": list(path),
                                                                  "value": value})


def or_defaults(value: Any) -> Any:
    """A section written as ``null`` (or a key with nothing under it) takes its defaults."""
    return {} if value is None else value


def path_shorthand(value: Any) -> Any:
    """``labels: path.csv`` is short for ``labels: {path: path.csv}``."""
    return {"path": value} if isinstance(value, str) else value


#: an unknown key is an error, so a typo never goes unnoticed
KNOWN_KEYS_ONLY = ConfigDict(extra="forbid")
