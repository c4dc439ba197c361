"""The loggers ``distributed`` configures for itself, for those that reroute them (the
command line's log file; the quiet workers of a cluster asm-dask starts)."""

from __future__ import annotations

import logging

#: families of loggers that ``distributed`` gives a stderr handler of its own when imported
DISTRIBUTED_LOGGERS = ("distributed", "bokeh", "tornado")


def distributed_loggers() -> list[logging.Logger]:
    """The loggers of ``distributed`` and of the libraries it configures (bokeh, tornado)
    that exist in this process."""
    return [logger for name, logger in logging.root.manager.loggerDict.items()
            if isinstance(logger, logging.Logger) and name.split(".")[0] in DISTRIBUTED_LOGGERS]


def writes_to_console(handler: logging.Handler) -> bool:
    """Whether ``handler`` is one of the console handlers ``distributed`` installs: a plain
    :class:`logging.StreamHandler` on whatever ``sys.stderr`` was when it was imported."""
    return type(handler) is logging.StreamHandler
