"""A daemon started with SIGTERM blocked (the mask is inherited through fork and exec, from a test
runner, a wrapper or an init script) still stops on SIGTERM, and so do the runs it starts."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.harness import Project, wait_for

pytestmark = pytest.mark.slow

CONFIG = "version: 1\njobs:\n  tick: {pipeline: fake.pipe:line, every: 1s, catchup: none, parameters: {mode: ok}}\n"


def blocked(pid: int) -> int:
    status = (Path("/proc") / str(pid) / "status").read_text()
    return int(re.search(r"SigBlk:\s+([0-9a-f]+)", status)[1], 16)  # type: ignore[index]


def block_sigterm() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})


def test_a_daemon_started_with_sigterm_blocked_still_stops_on_it(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(CONFIG)
    daemon = project.start_daemon("--no-check-pipelines", env=stand_in, preexec_fn=block_sigterm)
    wait_for(lambda: project.query("SELECT 1 FROM runs WHERE status = 'succeeded'"), 60, "a run")
    term_bit = 1 << (signal.SIGTERM - 1)
    assert not blocked(daemon.process.pid) & term_bit
    assert daemon.stop(timeout=30) == 0
