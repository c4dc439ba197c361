"""The one-line errors of starting a cluster: each an :class:`~asm_dask.errors.InputError`
that also derives from the matching built-in exception (``ValueError``,
``FileNotFoundError``, ``ImportError``, ``TimeoutError``)."""

from __future__ import annotations

from ..errors import InputError


class ClusterFileError(InputError, ValueError):
    """A cluster file, or a combination of arguments, that cannot be used."""


class ClusterFileNotFoundError(InputError, FileNotFoundError):
    """The cluster file does not exist."""


class MissingExtraError(InputError, ImportError):
    """The cluster kind needs an optional package; the message names the pip extra."""


class ClusterTimeoutError(InputError, TimeoutError):
    """The scheduler could not be reached, or no worker joined it, in time."""


def root_cause(exc: BaseException) -> BaseException:
    """The first exception of the chain that led to ``exc``."""
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__
    return exc


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
