"""Progress of long jobs, written once: a tqdm bar on a terminal, else a plain line per ~10 % on stderr.

Every long-running part of physgan (simulators, generation, downloads, training) reports through
:class:`Progress`, so ``progress`` means the same everywhere:

* ``None`` or ``True``: a bar when stderr is a terminal, plain lines otherwise (logs, Slurm, pipes);
* ``False`` or ``"none"``: silent;
* ``"bar"`` / ``"lines"``: that form, whatever stderr is.

Examples
--------
>>> with Progress(1000, "gflash", "shower", progress=False) as bar:
...     bar.update(500)
"""

from __future__ import annotations

import sys
import time
from typing import Any

from physgan.errors import ConfigError

__all__ = ["Progress", "progress_mode"]


def progress_mode(progress: bool | str | None) -> str:
    """``'bar'``, ``'lines'`` or ``'none'`` for a ``progress`` argument (see the module docstring)."""
    if progress is None or progress is True:
        return "bar" if sys.stderr.isatty() else "lines"
    if progress is False:
        return "none"
    if progress in ("bar", "lines", "none"):
        return str(progress)
    raise ConfigError(f"progress must be None, True, False, 'bar', 'lines' or 'none', got {progress!r}")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class Progress:
    """Progress of a count of ``unit`` towards ``total``.

    Parameters
    ----------
    total : int or None
        Expected count (None or 0: unknown; lines then come every ``unknown_every`` units).
    desc : str
        Label at the start of each line (``gflash``, a file name...).
    unit : str
        What is counted (``shower``, ``sample``, ``step``; ``B`` for bytes, shown in MB).
    progress : bool, str or None
        See :func:`progress_mode`.
    initial : int
        Count already done (a resumed download or training run).
    unknown_every : int
        With an unknown total, a line each time the count grows by this much.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        progress: bool | str | None = None,
        initial: int = 0,
        unknown_every: int = 1 << 24,
    ):
        self.mode = progress_mode(progress)
        self.total, self.desc, self.unit = (int(total) if total else None), desc, unit
        self.done = self.start_count = int(initial)
        self.t0 = time.time()
        self.unknown_every = max(1, int(unknown_every))
        self._next_frac = (int(10 * initial / self.total) + 1) / 10 if self.total else 0.0
        self._next_count = initial + self.unknown_every
        self._finished_line = False
        self.bar: Any = None
        if self.mode == "bar":
            from tqdm import tqdm

            is_bytes = unit == "B"
            self.bar = tqdm(total=self.total, initial=initial, desc=desc, unit=unit, unit_scale=is_bytes, file=sys.stderr,
                            dynamic_ncols=True)

    @property
    def enabled(self) -> bool:
        """Whether anything is shown."""
        return self.mode != "none"

    def _count(self, n: float) -> str:
        return _mb(n) if self.unit == "B" else f"{int(n)} {self.unit}s"

    def _rate(self) -> str:
        rate = (self.done - self.start_count) / max(time.time() - self.t0, 1e-9)
        return f"{_mb(rate)}/s" if self.unit == "B" else f"{rate:.4g} {self.unit}s/s"

    def update(self, k: int) -> None:
        """``k`` more units done."""
        self.done += int(k)
        if self.bar is not None:
            self.bar.update(int(k))
        elif self.mode == "lines":
            if self.total:
                frac = self.done / self.total
                if frac >= self._next_frac or self.done >= self.total:
                    if self.done >= self.total:
                        if self._finished_line:
                            return
                        self._finished_line = True
                    done = _mb(self.done) if self.unit == "B" else str(self.done)
                    total = self._count(self.total)
                    print(f"{self.desc}: {100 * frac:.0f}% ({done} of {total}, {self._rate()})", file=sys.stderr, flush=True)
                    self._next_frac = (int(10 * frac) + 1) / 10
            elif self.done >= self._next_count:
                print(f"{self.desc}: {self._count(self.done)} so far ({self._rate()})", file=sys.stderr, flush=True)
                self._next_count = self.done + self.unknown_every

    def set(self, n: int, postfix: dict[str, str] | None = None) -> None:
        """Move a bar to count ``n`` (absolute), with optional ``postfix`` values; lines mode prints nothing."""
        self.done = int(n)
        if self.bar is not None:
            self.bar.n = int(n)
            if postfix is not None:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.refresh()

    def write(self, text: str) -> None:
        """A message line (above the bar, or a plain line); nothing when silent."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.mode == "lines":
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar; in lines mode, a last line when the count never reached a known total's 100 %."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "lines" and not self._finished_line and self.done > self.start_count:
            self._finished_line = True
            pct = f"{100 * self.done / self.total:.0f}% " if self.total else ""
            print(f"{self.desc}: {pct}({self._count(self.done)}) done", file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
