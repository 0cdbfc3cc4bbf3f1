"""Signals: an image is counted whole or not at all.

While `Interrupts` is active (main thread only), SIGINT raises KeyboardInterrupt and SIGTERM
`Terminated`, except inside `atomic()`: a signal arriving there is raised when the block ends,
so a saved state never holds an image half counted (one sink updated, the counter not).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any


class Terminated(BaseException):
    """SIGTERM arrived (e.g. a cluster preempting the job); progress was saved. Like
    KeyboardInterrupt it is not an Exception, so no `except Exception` swallows it."""


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(f"terminated by signal {signum}")


class Interrupts:
    """See the module docstring."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # keep nohup's choice
                    self.saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> bool:
        for signum, handler in self.saved.items():  # None: a handler not set from Python
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if self.pending is not None:  # it came inside an atomic block that raised: it still wins
            signum, self.pending = self.pending, None
            _raise_for(signum)
        return False

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.depth:
            self.pending = signum
        else:
            _raise_for(signum)

    @contextlib.contextmanager
    def atomic(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.pending is not None and not self.depth:
            signum, self.pending = self.pending, None
            _raise_for(signum)
