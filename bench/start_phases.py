"""Wall-clock phases of the daemon's start, without a profiler's overhead.

    python bench/start_phases.py SCHEDULES.yaml STATE_DIR FAKE_PYTHON

Used by bench/firing.py when the start misses its target. Repeats what `zenml-scheduler run`
does up to its start-up table, in one process, with each phase wrapped in a timer, and prints
{phase: seconds} as JSON on stdout. Logging goes to stderr exactly as in the daemon, because
writing one JSON line per audit event is part of the real cost.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler.cli import run as cli_run  # after the path is set
from scheduler.config.settings import load_settings
from scheduler.daemon import loop as daemon
from scheduler.daemon.lease import Lease
from scheduler.daemon.logs import setup_logging
from scheduler.daemon.timer import SlotTimer
from scheduler.store.engine import open_store

PHASES: dict[str, float] = {}


def timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            PHASES[name] = PHASES.get(name, 0.0) + time.perf_counter() - began

    return wrapper


def instrument() -> None:
    """Wrap the names Daemon.start calls, where it looks them up (its module and classes)."""
    for name in ("apply_config", "catch_up_requests", "refresh_next_fire"):
        setattr(daemon, name, timed(f"start: {name}", getattr(daemon, name)))
    Lease.acquire = timed("start: lease.acquire", Lease.acquire)  # type: ignore[method-assign]
    SlotTimer.put = timed("start: timer.put (all jobs)", SlotTimer.put)  # type: ignore[method-assign]
    SlotTimer.start = timed("start: timer.start", SlotTimer.start)  # type: ignore[method-assign]


def main(config_path: str, state_dir: str, fake_python: str) -> None:
    os.environ.update(ZENML_SCHEDULER_STATE_DIR=state_dir, ZENML_SCHEDULER_PYTHON=fake_python)
    settings = load_settings(config=config_path)
    setup_logging("json", settings.log_level)
    instrument()
    config = timed("load + check config (fake check)", cli_run.load_checked)(settings)
    store = timed("open_store", open_store)(settings.resolved_db_url)
    runner = daemon.Daemon(settings, config, store)
    timed("Daemon.start (total)", runner.start)()
    timed("startup_table", cli_run.startup_table)(config, runner.next_fires)
    runner.close()
    print(json.dumps(PHASES))


if __name__ == "__main__":
    main(*sys.argv[1:4])
