"""Progress of long work: a live tqdm bar on a terminal, a plain line now and then in a log.

On a terminal :class:`Progress` is a tqdm bar. When its stream is not a terminal (a log file, a
pipe, CI), a bar redrawn several times a second would fill the log with thousands of carriage
returns, so it writes a complete line instead at every ``every_fraction`` of the total and at
least every ``every_s`` seconds between them (never more than one a second), and one when it
closes: done/total, percent, rate (``steps/s``, in the bar's unit), elapsed time and the postfix.
``write`` prints a message to stdout without breaking a live bar.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _clock_text(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """``update(n)``, ``set_postfix(**values)`` / ``set_postfix_str(text)``, ``write(msg)``, ``close()``.

    ``live``: force the tqdm bar (True) or the plain lines (False); by default a bar only when
    ``stream`` is a terminal. ``disable``: show nothing (``write`` still prints).
    """

    def __init__(self, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "step",
                 stream: TextIO | None = None, disable: bool = False, live: bool | None = None,
                 every_s: float = 30.0, every_fraction: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.n, self.desc, self.unit = total, int(initial), desc, unit
        self.disable = disable
        self.every_s, self.every_fraction, self.clock = every_s, every_fraction, clock
        self.postfix = ""
        self.closed = False
        self._bar = None
        if not disable and (is_terminal(self.stream) if live is None else live):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True, smoothing=0.1)
        self._t0 = self._last_t = clock()
        self._n0 = self._last_n = self.n

    def update(self, n: int = 1) -> None:
        if self.disable or self.closed:
            return
        self.n += int(n)
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        since = now - self._last_t
        advanced = (self.n - self._last_n) / self.total if self.total else 0.0
        if since >= self.every_s or (advanced >= self.every_fraction and since >= 1.0):
            self._line(now)

    def set_postfix(self, **values) -> None:
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in values.items()))

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def write(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elif not self.disable and self.n > self._last_n:
            self._line(self.clock())

    def _line(self, now: float) -> None:
        elapsed = now - self._t0
        rate = (self.n - self._n0) / elapsed if elapsed > 0 else 0.0
        done = f"{self.n:,}/{self.total:,} {self.unit}s ({self.n / self.total:.0%})" if self.total \
            else f"{self.n:,} {self.unit}s"
        parts = [f"{self.desc}: {done}" if self.desc else done, f"{rate:,.{0 if rate >= 10 else 2}f} {self.unit}s/s",
                 f"elapsed {_clock_text(elapsed)}"]
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(parts), file=self.stream, flush=True)
        self._last_t, self._last_n = now, self.n

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

