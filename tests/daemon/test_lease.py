"""The lease against real processes and real signals: a daemon frozen past its lease while another
takes over launches nothing when it wakes; a state database deleted under a daemon stops it;
an in-memory database is refused."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.daemon.test_policies import start
from tests.harness import Project, wait_for

pytestmark = pytest.mark.slow

EVERY_SECOND = """\
version: 1
jobs:
  tick: {{pipeline: fake.pipe:line, every: 1s, parameters: {{mode: ok, seconds: 0.5, markers: "{markers}"}}}}
"""


def launches(markers: Path) -> Counter[str]:
    """Each launch leaves `<run key>#<run-name suffix>`; the suffix digests the key and attempt."""
    return Counter(path.name for path in markers.iterdir()) if markers.exists() else Counter()


def test_a_daemon_frozen_past_its_lease_launches_nothing_when_it_wakes(
    project: Project, stand_in: dict[str, str]
) -> None:
    markers = project.root / "markers"
    project.write_config(EVERY_SECOND.format(markers=markers))
    first = start(project, stand_in, ZENML_SCHEDULER_LEASE_TTL="2s")
    wait_for(lambda: len(launches(markers)) >= 2, 60, "the first daemon's runs")
    first.process.send_signal(signal.SIGSTOP)
    time.sleep(3)  # past the lease TTL
    second = start(project, stand_in, ZENML_SCHEDULER_LEASE_TTL="2s")
    taken_over = len(launches(markers))
    wait_for(lambda: len(launches(markers)) >= taken_over + 3, 60, "the second daemon's runs")
    first.process.send_signal(signal.SIGCONT)
    assert first.process.wait(timeout=30) == 3  # daemon state: it lost the lease
    assert "lost its lease" in first.output
    time.sleep(2)
    counts = launches(markers)
    assert counts and max(counts.values()) == 1, [name for name, n in counts.items() if n > 1]
    assert second.process.poll() is None
    own = project.query("SELECT COUNT(*) AS n FROM audit WHERE event='daemon-stopped'")[0]["n"]
    assert own == 0  # the frozen daemon wrote nothing into the trail of the one that leads now
    assert second.stop() == 0


def test_a_state_database_deleted_under_the_daemon_stops_it(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config("version: 1\njobs:\n  idle: {pipeline: fake.pipe:line, cron: '0 0 1 1 *'}\n")
    daemon = start(project, stand_in, ZENML_SCHEDULER_LEASE_TTL="3s")
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        path = project.db_path.with_name(name)
        if path.exists():
            os.unlink(path)
    assert daemon.process.wait(timeout=30) == 3
    assert "was deleted while this daemon was running" in daemon.output


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_state_database_is_refused(project: Project, url: str) -> None:
    project.write_config("version: 1\njobs: {}\n")
    result = project.cli("run", "--no-check-pipelines", "--db-url", url, timeout=60)
    assert result.returncode == 2 and "in-memory database" in result.stderr
