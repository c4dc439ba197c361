"""Stopping a command on a signal: Ctrl-C, ``kill``, a closed terminal.

Only the command line installs these handlers; a notebook keeps its own Ctrl-C.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any


class Interrupted(BaseException):
    """A signal asked the command to stop (Ctrl-C, kill, a closed terminal); like
    :class:`KeyboardInterrupt`, not an error."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal = signal.Signals(signum)


#: the signal that asked to stop, once one has; see :func:`stop_on_signals`
_stop_requested: list[int] = []


@contextlib.contextmanager
def stop_on_signals(signals: Sequence[int]) -> Iterator[None]:
    """Within the block, each of ``signals`` raises :class:`Interrupted` in the main thread,
    and so again at the next stage or wait if a library swallowed it (a bare ``except:``
    in an import, say): a command asked to stop stops."""
    def interrupt(signum: int, frame: Any) -> None:
        _stop_requested.append(signum)
        raise Interrupted(signum)

    def unraisable(info: Any) -> None:
        # Raised where Python cannot raise (a garbage collector's callback): check_stop
        # raises it again at the next stage or wait, so it is not printed here.
        if not isinstance(info.exc_value, Interrupted):
            hook(info)

    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = hook
        _stop_requested.clear()


def check_stop() -> None:
    """Raise :class:`Interrupted` if a signal asked to stop (see :func:`stop_on_signals`)."""
    if _stop_requested:
        raise Interrupted(_stop_requested[0])
