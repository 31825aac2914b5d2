"""Child processes that do not outlive their parent (Linux ``prctl(PR_SET_PDEATHSIG)``).

A child started with one of these as ``preexec_fn`` gets a signal from the
kernel when the thread that started it dies, even by SIGKILL: a tippecanoe
run whose Gunicorn worker was stopped, or a load generator whose lab was
killed, stops too instead of running on unowned.
"""

from __future__ import annotations

import ctypes
import signal

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Run in the child before exec: SIGTERM when its parent dies."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def killed_with_parent() -> None:
    """Like :func:`die_with_parent` with SIGKILL, for programs whose output is thrown
    away anyway (a tile build is started again from scratch)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def interrupt_with_parent() -> None:
    """Like :func:`die_with_parent` with SIGINT: a Python child gets KeyboardInterrupt
    and can clean up (``geojson-api stack up`` then stops what it started)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGINT))
