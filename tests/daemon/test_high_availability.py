"""High availability on PostgreSQL against real daemons, each in a UTS namespace of its own (a
host name of its own, so the lease's same-host process checks do not apply): a standby takes
over from a leader killed with -9 or frozen past its lease; a frozen leader that wakes fires
nothing, says so and waits as a standby again; the leader's /metrics show its role, epoch and
transitions; --standby is refused on SQLite."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.harness import DaemonProcess, Project, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="a host name of its own per daemon (unshare --uts) needs root"),
]

TTL = 3.0
EVERY_SECOND = """\
version: 1
jobs:
  tick: {{pipeline: fake.pipe:line, every: 1s, parameters: {{mode: ok, seconds: 0.2, markers: "{markers}"}}}}
"""


class Database:
    """What the test reads from the PostgreSQL state database."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(text(sql), params))
        except Exception:  # the schema is not there yet while the first daemon starts
            return []

    def audit(self, event: str) -> list[dict[str, Any]]:
        found = self.rows("SELECT details FROM audit WHERE event = :event ORDER BY id", event=event)
        return [json.loads(row.details) for row in found]

    def epoch(self) -> int:
        return self.rows("SELECT epoch FROM lease")[0].epoch


def launches(markers: Path) -> list[tuple[str, float, int]]:
    """(marker, start time, pid of the daemon that launched it) for every launch, oldest first."""
    found = []
    for path in markers.iterdir() if markers.exists() else []:
        started, daemon = path.read_text().split()
        found.append((path.name, float(started), int(daemon)))
    return sorted(found, key=lambda launch: launch[1])


@pytest.fixture
def db(pg_url: str) -> Database:
    return Database(pg_url)


def daemon(project: Project, stand_in: dict[str, str], url: str, host: str, *flags: str) -> DaemonProcess:
    args = ("--no-check-pipelines", "--db-url", url, "--lease-ttl", f"{TTL:.0f}s", *flags)
    return project.start_daemon(*args, env=stand_in, host=host)


API = ("--api", "--api-port", "0")


def read_key(project: Project) -> str:
    done = project.cli("api-key", "create", "--name", "prometheus", "--scope", "read", "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["key"])


def lease_metrics(process: DaemonProcess, key: str, leads: int = 1) -> dict[str, float]:
    """The zenml_scheduler_* samples of /metrics on the API `process` opened when it led the
    `leads`-th time (each time it leads it serves the API afresh, on a port of its own)."""

    def urls() -> list[str] | None:
        found = re.findall(r"HTTP API on (https?://\S+) ", process.output)
        return found if len(found) >= leads else None

    base = wait_for(urls, 30, "the API to listen")[leads - 1]
    request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name.startswith("zenml_scheduler_")
    }


def leader_and_standby(
    project: Project,
    stand_in: dict[str, str],
    url: str,
    db: Database,
    leader_flags: tuple[str, ...] = (),
    standby_flags: tuple[str, ...] = (),
) -> tuple[DaemonProcess, DaemonProcess, Path]:
    markers = project.root / "markers"
    project.write_config(EVERY_SECOND.format(markers=markers))
    leader = daemon(project, stand_in, url, "alpha", "--standby", *leader_flags)
    wait_for(lambda: len(launches(markers)) >= 2, 60, "the leader's runs")
    standby = daemon(project, stand_in, url, "beta", "--standby", *standby_flags)
    wait_for(lambda: any(e["host"] == "beta" for e in db.audit("standby-started")), 60, "the standby")
    assert db.audit("standby-started")[-1]["leader"]["host"] == "alpha"
    return leader, standby, markers


def assert_each_key_launched_once(markers: Path) -> None:
    names = [name for name, _, _ in launches(markers)]
    assert len(names) == len(set(names)), sorted(names)
    keys = [name.split("#")[0] for name in names]
    assert len(keys) == len(set(keys)), sorted(keys)


def test_a_standby_takes_over_from_a_leader_killed_with_minus_9(
    project: Project, stand_in: dict[str, str], pg_url: str, db: Database
) -> None:
    key = read_key(project)
    leader, standby, markers = leader_and_standby(project, stand_in, pg_url, db, standby_flags=API)
    assert db.epoch() == 1
    leader.kill9()
    killed_at = time.time()
    wait_for(lambda: any(pid == standby.process.pid for _, _, pid in launches(markers)), 30, "the standby's runs")
    done = launches(markers)
    last_old = max(at for _, at, pid in done if pid == leader.process.pid)
    first_new = min(at for _, at, pid in done if pid == standby.process.pid)
    assert first_new > killed_at
    assert first_new - last_old < TTL + 2, f"{first_new - last_old:.1f}s without a launch"
    assert db.epoch() == 2
    elected = db.audit("leader-elected")
    assert [e["epoch"] for e in elected] == [1, 2]
    assert elected[-1]["host"] == "beta" and elected[-1]["previous"]["host"] == "alpha"
    health = project.cli("health", "--json", "--db-url", pg_url)
    report = json.loads(health.stdout)
    assert health.returncode == 0 and report["role"] == "leader" and report["epoch"] == 2
    assert report["leader"]["host"] == "beta" and report["leader"]["pid"] == standby.process.pid
    status = project.cli("status", "--json", "--db-url", pg_url)
    assert status.returncode == 0, status.stderr
    leads = {field: report[field] for field in ("role", "epoch", "leader")}
    assert [job["daemon"] for job in json.loads(status.stdout)] == [leads]  # as health reports it
    metrics = lease_metrics(standby, key)
    assert metrics["zenml_scheduler_leader"] == 1.0 and metrics["zenml_scheduler_lease_epoch"] == 2.0
    assert metrics["zenml_scheduler_leader_transitions_total"] == 1.0  # elected once
    assert 0.0 <= metrics["zenml_scheduler_lease_age_seconds"] < TTL * 2 / 3
    time.sleep(1.5)
    assert_each_key_launched_once(markers)
    assert standby.stop() == 0


def test_a_frozen_leader_that_wakes_after_a_takeover_fires_nothing_and_stands_by(
    project: Project, stand_in: dict[str, str], pg_url: str, db: Database
) -> None:
    key = read_key(project)
    leader, standby, markers = leader_and_standby(project, stand_in, pg_url, db, leader_flags=API)
    leader.process.send_signal(signal.SIGSTOP)
    wait_for(lambda: db.epoch() == 2, 30, "the takeover")
    wait_for(lambda: any(pid == standby.process.pid for _, _, pid in launches(markers)), 30, "the standby's runs")
    leader.process.send_signal(signal.SIGCONT)
    resumed_at = time.time()
    wait_for(lambda: any(e["host"] == "alpha" for e in db.audit("standby-started")), 30, "the old leader standing by")
    time.sleep(1.5)
    # A child the old leader spawned after waking starts after SIGCONT; one it spawned just before the
    # SIGSTOP may start a moment later on a loaded machine, but never a whole takeover later.
    assert not [at for _, at, pid in launches(markers) if pid == leader.process.pid and at >= resumed_at]
    demoted = db.audit("leader-demoted")
    assert len(demoted) == 1 and demoted[0]["host"] == "alpha" and demoted[0]["epoch"] == 1
    # Woken, it finds its lease taken, or (frozen inside a transaction the server ended) cannot renew it.
    assert re.search("lost its lease|could not renew its lease", demoted[0]["why"]) and demoted[0]["then"] == "standby"
    assert db.audit("standby-started")[-1]["leader"]["host"] == "beta"
    assert "waits as a standby again" in leader.output
    assert leader.process.poll() is None and standby.process.poll() is None
    assert_each_key_launched_once(markers)
    # The standby it became takes over in turn.
    standby.kill9()
    wait_for(lambda: db.epoch() == 3, 30, "the old leader leading again")
    assert db.audit("leader-elected")[-1]["host"] == "alpha"
    metrics = lease_metrics(leader, key, leads=2)  # elected, demoted, elected again
    assert metrics["zenml_scheduler_leader"] == 1.0 and metrics["zenml_scheduler_lease_epoch"] == 3.0
    assert metrics["zenml_scheduler_leader_transitions_total"] == 3.0
    assert leader.stop() == 0


def test_without_standby_a_frozen_leader_exits_3_and_a_second_daemon_is_refused(
    project: Project, stand_in: dict[str, str], pg_url: str, db: Database
) -> None:
    markers = project.root / "markers"
    project.write_config(EVERY_SECOND.format(markers=markers))
    first = daemon(project, stand_in, pg_url, "alpha")
    wait_for(lambda: len(launches(markers)) >= 1, 60, "the first daemon's runs")
    second = daemon(project, stand_in, pg_url, "beta")
    assert second.process.wait(timeout=60) == 3
    assert "already runs on this state database" in second.output and "on alpha" in second.output
    first.process.send_signal(signal.SIGSTOP)
    time.sleep(TTL + 0.5)
    third = daemon(project, stand_in, pg_url, "gamma", "--standby")
    wait_for(lambda: db.epoch() == 2, 30, "the takeover")
    first.process.send_signal(signal.SIGCONT)
    assert first.process.wait(timeout=30) == 3
    assert "lost its lease" in first.output
    assert [e["then"] for e in db.audit("leader-demoted")] == ["exit"]
    assert third.stop() == 0


def test_standby_is_refused_on_sqlite(project: Project) -> None:
    project.write_config("version: 1\njobs: {}\n")
    result = project.cli("run", "--no-check-pipelines", "--standby", timeout=60)
    assert result.returncode == 2
    assert "--standby needs a PostgreSQL state database" in result.stderr and "WAL is not safe" in result.stderr
