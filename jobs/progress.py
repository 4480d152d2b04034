"""Progress of a long job: files done / total, audio hours per second, ETA.

On a terminal it redraws one line (a bar); otherwise (logs, CI, pipes) it prints a plain line
every ``every_s`` seconds and one at the end.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN / inf
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts files and audio seconds as batches finish."""

    def __init__(self, total_files: int, total_audio_s: float, *, stream=None, every_s: float = 5.0,
                 done_files: int = 0, done_audio_s: float = 0.0, label: str = "extract"):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total_files, self.total_audio_s = total_files, total_audio_s
        self.files, self.audio_s = done_files, done_audio_s
        self._base_audio = done_audio_s
        self.failed = 0
        self.every_s = every_s
        self.label = label
        self.start = time.monotonic()
        self._last_print = None  # the first update always prints (monotonic time may start near 0)
        self._shown = None  # the counts of the last line printed

    def update(self, files: int, audio_s: float, failed: int = 0) -> None:
        self.files += files
        self.audio_s += audio_s
        self.failed += failed
        now = time.monotonic()
        if self.tty or self._last_print is None or now - self._last_print >= self.every_s:
            self._last_print = now
            self._show()

    def restart_clock(self) -> None:
        """Time the rate (and so the ETA) from now, as if the job started here with what is
        done: after a wait in which nothing could run (no workers)."""
        self._base_audio = self.audio_s
        self.start = time.monotonic()

    def rate_hours_per_s(self) -> float:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        return (self.audio_s - self._base_audio) / 3600.0 / elapsed

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.rate_hours_per_s()
        left = max(self.total_audio_s - self.audio_s, 0.0) / 3600.0
        eta = left / rate if rate > 0 else float("nan")
        pct = 100.0 * self.files / self.total_files if self.total_files else 100.0
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"{self.label}: {self.files}/{self.total_files} files ({pct:.0f}%){failed}, "
                f"{self.audio_s / 3600:.2f} h audio, {rate:.3f} audio h/s, "
                f"elapsed {format_duration(elapsed)}, ETA {format_duration(eta) if self.files < self.total_files else '0:00'}")

    def _show(self) -> None:
        self._shown = (self.files, self.audio_s, self.failed)
        if self.tty:
            width = 24
            filled = int(width * self.files / self.total_files) if self.total_files else width
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {self.line()}\x1b[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty or self._shown != (self.files, self.audio_s, self.failed):
            self._show()  # a plain line only if the last one printed is not already the end
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def plural(n: int, one: str, many: str | None = None) -> str:
    """``"1 batch"``, ``"3 batches"``: a count and its noun for log lines."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
