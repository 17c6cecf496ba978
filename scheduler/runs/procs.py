"""What /proc says about a process: whether a PID is still the process we started (PIDs are reused)."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces; everything after the last ')' is space-separated.
    return stat.rsplit(")", 1)[1].split()


def process_start_ticks(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), to tell a reused PID apart."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def process_alive(pid: int, start_ticks: str | None) -> bool:
    """Whether `pid` is still the process that started at `start_ticks` and has not exited
    (a zombie has exited: it only waits for a parent to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc: trust kill(0)
    if fields[0] in ("Z", "X"):
        return False
    return start_ticks is None or fields[19] == start_ticks
