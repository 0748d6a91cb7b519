"""Stopping cleanly on Ctrl-C and on SIGTERM.

Python turns Ctrl-C (SIGINT) into ``KeyboardInterrupt``; SIGTERM (``kill``, a
service manager, a container stopping) ends the process at once by default,
which skips every ``finally``: a half-written temporary file and a child
ffmpeg are left behind. Inside :func:`stop_on_signals` SIGTERM raises
:class:`Terminated` (a ``KeyboardInterrupt``) instead, so the same clean-up
runs as for Ctrl-C: temporary files are removed and child processes ended.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

#: Exit status of a process stopped by a signal, as shells report it (128 + the signal number).
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop like Ctrl-C (a ``KeyboardInterrupt``, so ``except Exception`` does not swallow it)."""


def _raise_terminated(signum, _frame):
    raise Terminated(f"stopped by signal {signal.Signals(signum).name}")


@contextmanager
def stop_on_signals():
    """While inside, SIGTERM raises :class:`Terminated` in the main thread (elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_status(exc: BaseException) -> int:
    """The exit status for a run stopped by ``exc`` (130 for Ctrl-C, 143 for SIGTERM)."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
