"""Where a command's messages go: the console for a person, ``asm-dask.log`` for the details.

The console gets asm-dask's own lines (stages, progress, warnings, the dashboard link)
and, when the command fails, one line saying why. The log file in the output folder gets
the same lines, what Dask's ``distributed`` logs about the cluster (a worker's "Compute
Failed" block, a lost worker...) and the full traceback of a failure. ``verbose`` shows
the log's details on the console as well.

The log is opened only once the job file has been read and its paths checked: a job
file or an output folder that cannot be used is reported on one line and nothing is
written. Each command appends to the log under a header line of its own, so a failed
run's record survives the next run into the same folder.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, TextIO

from ..errors import InputError

#: the log file's name in the output folder
LOG_NAME = "asm-dask.log"
#: families of loggers that ``distributed`` gives a stderr handler of its own when imported
DISTRIBUTED_LOGGERS = ("distributed", "bokeh", "tornado")
_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


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
        self._warnings: logging.Logger | None = None

    def __enter__(self) -> RunLog:
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
        self._route_warnings()
        self._console = sys.stderr
        sys.stderr = _Tee(self._console, self._file, self._handler.lock)

    def failed(self, exc: BaseException, status: int) -> int:
        """Report ``exc``: its traceback into the log (and the console if verbose), then one
        line on the console naming the log; return ``status``, the exit status."""
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
        name = signal.Signals(signum).name
        if self._file is not None:
            self._file.write(f"interrupted by {name}\n")
        where = f" (details: {self.path})" if self.path is not None else ""
        print(f"asm-dask: interrupted ({name}); run the same command again to resume{where}",
              file=self._console or sys.stderr, flush=True)
        return 128 + int(signum)

    def close(self) -> None:
        """Give the console and ``distributed``'s handlers back, and close the file."""
        if self._warnings is not None:
            logging.captureWarnings(False)
            self._warnings.removeHandler(self._handler)
            self._warnings.propagate, self._warnings = True, None
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

    def _route_warnings(self) -> None:
        """Python warnings of the libraries (scikit-learn's ``ConvergenceWarning``...) into the
        file (verbose: the console too), as logging records: they are details."""
        logging.captureWarnings(True)
        self._warnings = logging.getLogger("py.warnings")
        self._warnings.addHandler(self._handler)
        self._warnings.propagate = self.verbose

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


def distributed_loggers() -> list[logging.Logger]:
    """The loggers of ``distributed`` and of the libraries it configures (bokeh, tornado)
    that exist in this process."""
    return [logger for name, logger in logging.root.manager.loggerDict.items()
            if isinstance(logger, logging.Logger) and name.split(".")[0] in DISTRIBUTED_LOGGERS]


def writes_to_console(handler: logging.Handler) -> bool:
    """Whether ``handler`` is one of the console handlers ``distributed`` installs: a plain
    :class:`logging.StreamHandler` on whatever ``sys.stderr`` was when it was imported."""
    return type(handler) is logging.StreamHandler


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
