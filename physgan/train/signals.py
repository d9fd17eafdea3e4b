"""Graceful stops: SIGTERM / SIGUSR1 (preemption) and Ctrl-C request a checkpoint and a clean exit.

Slurm sends SIGTERM (or SIGUSR1 with ``--signal``) before killing a job; the
trainer finishes its current step, writes a checkpoint, and exits 0 so the job
can be requeued and continued with ``--resume auto``. The first Ctrl-C (SIGINT)
does the same (the command then exits 130); a second Ctrl-C aborts at once
(``KeyboardInterrupt``), keeping whatever checkpoint was last written.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["StopFlag"]


class StopFlag:
    """Installs handlers that set :attr:`requested` to the signal's name; a repeated SIGINT aborts.

    Parameters
    ----------
    signals : tuple of int
        The signals that request a graceful stop (default SIGTERM, SIGUSR1, SIGINT).
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)):
        self.requested: str | None = None
        self._old = {}
        for s in signals:
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook worker): no handler
                pass

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested == "SIGINT":
            raise KeyboardInterrupt  # the second Ctrl-C: abort now
        if signum == signal.SIGINT:
            print("physgan: Ctrl-C: finishing this step and writing a checkpoint (Ctrl-C again to abort)", file=sys.stderr, flush=True)
        self.requested = signal.Signals(signum).name

    def agreed(self, dist_info, device) -> bool:
        """Whether to stop now: a stop was requested here or, in a distributed run, on any rank (all ranks stop at
        the same step, or the collectives would hang). A stop requested elsewhere reads as SIGTERM here."""
        stop_now = self.requested is not None
        if dist_info.enabled:
            import torch

            flag = torch.tensor([float(stop_now)], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop_now = bool(flag.item())
        if stop_now:
            self.requested = self.requested or "SIGTERM"
        return stop_now

    def restore(self) -> None:
        """Put the previous handlers back."""
        for s, h in self._old.items():
            try:
                signal.signal(s, h)
            except ValueError:
                pass
        self._old = {}
