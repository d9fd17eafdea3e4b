"""Graceful preemption: SIGTERM / SIGUSR1 request a checkpoint and a clean exit.

Slurm sends SIGTERM (or SIGUSR1 with ``--signal``) before killing a job; the
trainer finishes its current step, writes a checkpoint, and exits 0 so the job
can be requeued and continued with ``--resume auto``.
"""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["StopFlag"]


class StopFlag:
    """Installs handlers for SIGTERM/SIGUSR1 (and SIGINT optionally) that set a flag."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGUSR1)):
        self.requested: str | None = None
        self._old = {}
        for s in signals:
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook worker): no handler
                pass

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = signal.Signals(signum).name

    def restore(self) -> None:
        for s, h in self._old.items():
            try:
                signal.signal(s, h)
            except ValueError:
                pass
        self._old = {}
