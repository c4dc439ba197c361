"""Where a command's messages go: the console for a person, ``asm-dask.log`` for the details.

The library speaks through :mod:`logging` (the ``asm_dask`` loggers) and :mod:`warnings`
(:class:`~asm_dask.errors.AsmDaskWarning`); only the command line prints. The console
gets asm-dask's own lines (stages as ``[asm-dask] fit...``, progress redrawn on one
line, ``[asm-dask] warning: ...``, the dashboard link) and, when the command fails, one
line saying why. The log file in the output folder gets
the same lines, what Dask's ``distributed`` logs about the cluster (a worker's "Compute
Failed" block, a lost worker...) and the full traceback of a failure. ``verbose`` shows
the log's details on the console as well.

The log is opened only once the job file has been read and its paths checked: a job
file or an output folder that cannot be used is reported on one line and nothing is
written. Each command appends to the log under a header line of its own, so a failed
run's record survives the next run into the same folder.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from typing import Any, TextIO

from ..errors import AsmDaskWarning, InputError
from ..runtime.logs import distributed_loggers, writes_to_console

#: the log file's name in the output folder
LOG_NAME = "asm-dask.log"
_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
#: the library's own loggers
LIBRARY_LOGGER = "asm_dask"
#: loggers whose records are details for the log file: the libraries' warnings, and
#: asyncio's (a cluster stopped after a failed task can leave a future whose exception
#: nobody read, which asyncio reports when the future is collected)
DETAIL_LOGGERS = ("py.warnings", "asyncio")


class RunLog:
    """A command's log: nothing until :meth:`open`, then the console and ``asm-dask.log``.

    Use it as a context manager around the whole command; on leaving, the console and
    ``distributed``'s logging are as they were and the file is closed.

    Parameters
    ----------
    verbose : bool, default False
        Also print ``distributed``'s log records and the traceback of a failure on
        the console.
    command : str, default ""
        The command line, for the header line of this command's part of the log.
    """

    def __init__(self, verbose: bool = False, command: str = "") -> None:
        self.verbose = verbose
        self.command = command
        self.path: str | None = None
        self._file: TextIO | None = None
        self._console: TextIO | None = None
        self._handler: logging.Handler | None = None
        #: loggers given the file's handler, and console handlers taken off loggers
        self._routed: list[logging.Logger] = []
        self._detached: list[tuple[logging.Logger, logging.Handler]] = []
        self._details: list[logging.Logger] = []
        self._failed = False
        self._library = _ConsoleHandler()
        self._shown_warning: Any = None

    def __enter__(self) -> RunLog:
        library = logging.getLogger(LIBRARY_LOGGER)
        library.addHandler(self._library)
        library.setLevel(logging.INFO)
        library.propagate = False
        self._shown_warning, warnings.showwarning = warnings.showwarning, self._show_warning
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def open(self, folder: str, key: str = "output") -> None:
        """Start writing the log, ``folder``/:data:`LOG_NAME`, creating ``folder``.

        Raises
        ------
        InputError
            ``folder`` cannot be created or the log cannot be written there; the
            message ends with ``key``, the setting or option that named ``folder``.
        """
        from .. import storage  # here, not at import: the command line answers --help without fsspec

        path = storage.join(folder, LOG_NAME)
        try:
            self._file = storage.open_appending(path)
        except OSError as exc:
            raise InputError(f"{folder}: cannot write the log {LOG_NAME} there: "
                             f"{(exc.strerror or str(exc)).lower()} ({key})") from None
        self.path = path
        self._file.write(f"==== asm-dask {self.command} (in {os.getcwd()}, "
                         f"started {time.strftime('%Y-%m-%d %H:%M:%S %Z')})\n")
        self._route_distributed()
        self._details = [logging.getLogger(name) for name in DETAIL_LOGGERS]
        for logger in self._details:
            logger.addHandler(self._handler)
            logger.propagate = self.verbose
        self._console = sys.stderr
        sys.stderr = _Tee(self._console, self._file, self._handler.lock)

    def failed(self, exc: BaseException, status: int) -> int:
        """Report ``exc``: its traceback into the log (and the console if verbose), then one
        line on the console naming the log; return ``status``, the exit status."""
        self._failed = True
        details = "".join(traceback.format_exception(exc))
        if self._file is not None:
            self._file.write(details)
        if self.verbose:
            (self._console or sys.stderr).write(details)
        if isinstance(exc, InputError):
            line = f"asm-dask: error: {exc}"
        else:
            line = f"asm-dask: internal error (a bug; please report it): {type(exc).__name__}: {_first_line(exc)}"
        if self.path is not None:
            line += f" (details: {self.path})"
        elif not self.verbose and not isinstance(exc, InputError):
            line += " (run again with --verbose for the traceback)"
        print(line, file=self._console or sys.stderr, flush=True)
        return status

    def interrupted(self, signum: int) -> int:
        """Report a command stopped by signal ``signum``; return the exit status a shell
        gives a process stopped by it (130 for Ctrl-C)."""
        self._failed = True
        name = signal.Signals(signum).name
        if self._file is not None:
            self._file.write(f"interrupted by {name}\n")
        where = f" (details: {self.path})" if self.path is not None else ""
        print(f"asm-dask: interrupted ({name}); run the same command again to resume{where}",
              file=self._console or sys.stderr, flush=True)
        return 128 + int(signum)

    def close(self) -> None:
        """Give the console, ``warnings`` and ``distributed``'s handlers back, and close the file."""
        library = logging.getLogger(LIBRARY_LOGGER)
        library.removeHandler(self._library)
        library.propagate = True
        if self._shown_warning is not None:
            warnings.showwarning, self._shown_warning = self._shown_warning, None
        if self._details and self._failed:
            # What a cluster stopped by the failure left to report when collected goes to
            # the file. (Not after a success: a collection costs 0.1 s.)
            gc.collect()
        for logger in self._details:
            logger.removeHandler(self._handler)
            logger.propagate = True
        self._details = []
        for logger in self._routed:
            logger.removeHandler(self._handler)
        for logger, handler in self._detached:
            logger.addHandler(handler)
        self._routed, self._detached = [], []
        if self._console is not None:
            sys.stderr, self._console = self._console, None
        if self._file is not None:
            self._file.close()
            self._file = None

    def _show_warning(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: TextIO | None = None, line: str | None = None) -> None:
        """A caveat of asm-dask's (:class:`AsmDaskWarning`) on the console; a warning of the
        libraries (scikit-learn's ``ConvergenceWarning``...) is a detail: in the log file
        (with ``verbose``, the console too), or where Python puts it before the log is open."""
        if issubclass(category, AsmDaskWarning):
            logging.getLogger(LIBRARY_LOGGER).warning("%s", message)
        elif self._details:
            detail = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
            logging.getLogger("py.warnings").warning("%s", detail)
        else:
            self._shown_warning(message, category, filename, lineno, file, line)

    def _route_distributed(self) -> None:
        """Send ``distributed``'s records into the file instead of (verbose: as well as)
        the console."""
        import distributed  # noqa: F401  its import installs the console handlers replaced here

        self._handler = _LogFileHandler(self._file)
        self._handler.setFormatter(logging.Formatter(_FORMAT))
        for logger in distributed_loggers():
            console = [handler for handler in logger.handlers if writes_to_console(handler)]
            if console:
                logger.addHandler(self._handler)
                self._routed.append(logger)
            if not self.verbose:
                for handler in console:
                    logger.removeHandler(handler)
                    self._detached.append((logger, handler))


class _ConsoleHandler(logging.Handler):
    """asm-dask's own records on the console, as a person reads them: ``[asm-dask] fit...``,
    ``[asm-dask] warning: ...``, the dashboard link as it is, and progress
    (records with a ``progress`` attribute) redrawn on one line in a terminal, a line
    per report elsewhere (the log file gets each redraw as a line of its own)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._line_open = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            stream = sys.stderr
            progress = getattr(record, "progress", None)
            if progress is not None and stream.isatty():
                stream.write("\r" + message + ("\n" if progress == "done" else ""))
                self._line_open = progress != "done"
            else:
                if self._line_open:
                    stream.write("\n")
                    self._line_open = False
                if progress is None and not getattr(record, "plain", False):
                    message = "[asm-dask] " + ("warning: " if record.levelno >= logging.WARNING else "") + message
                stream.write(message + "\n")
            stream.flush()
        except Exception:  # a console that went away must not stop the command
            self.handleError(record)


class _LogFileHandler(logging.StreamHandler):
    """The log file's handler: a stream handler that is not taken for a console's."""


class _Tee:
    """The console, with every line also written to the log file.

    A progress line redrawn in a terminal (``\\r``) lands in the file as a line of its own.
    ``lock`` is the log file handler's, so that a line written here and a record logged
    by another thread (Dask's event loop) never interleave.
    """

    def __init__(self, console: TextIO, file: TextIO, lock: threading.RLock) -> None:
        self.console, self.file, self.lock = console, file, lock
        self._line_open = False

    def write(self, text: str) -> int:
        self.console.write(text)
        with self.lock:
            for i, part in enumerate(text.split("\r")):
                if i > 0 and self._line_open:  # a redraw: end the line drawn so far
                    self.file.write("\n")
                    self._line_open = False
                if part:
                    self.file.write(part)
                    self._line_open = not part.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.console.flush()
        with self.lock:
            self.file.flush()

    def isatty(self) -> bool:
        return self.console.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)
