"""The lease against real processes and real signals: a daemon frozen past its lease while another
takes over launches nothing when it wakes; a state database deleted under a daemon stops it;
an in-memory database is refused. And in process, on both engines: the epoch every acquisition
raises, the fence that checks it, self-fencing before a launch, and the database's clock."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from scheduler.daemon.lease import Lease, current_holder
from scheduler.errors import LeaseHeldError, LeaseLostError
from scheduler.store.engine import Store, open_store
from scheduler.timing.clock import utcnow
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


# ---- the epoch, the fence and the lease's clock, in process on both engines ------------------------
TTL = timedelta(seconds=9)


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


def lease_of(store: Store, pid: int, alive: set[int], ticks: Ticks | None = None) -> Lease:
    """A lease held by `pid` on this host, alive while `pid` is in `alive` (so a test can let a
    holder die without waiting out the TTL)."""
    return Lease(store, TTL, "schedules.yaml", pid=pid, alive=lambda p, _start: p in alive, monotonic=ticks or Ticks())


def write(store: Store) -> None:
    with store.write() as conn:
        conn.execute(text("UPDATE meta SET value = value WHERE key = 'schema_version'"))


def test_every_acquisition_raises_the_epoch_and_the_old_holder_writes_nothing(db_url: str) -> None:
    first_store, second_store = open_store(db_url), open_store(db_url)
    alive = {1001, 1002}
    first, second = lease_of(first_store, 1001, alive), lease_of(second_store, 1002, alive)
    first.acquire(utcnow())
    assert first.epoch == 1
    alive.discard(1001)
    second.acquire(utcnow())
    assert second.epoch == 2
    with pytest.raises(LeaseLostError, match=r"epoch 1.*to pid 1002.*epoch 2"):
        write(first_store)
    write(second_store)  # the new holder's writes go through
    holder = current_holder(first_store, utcnow(), TTL, alive=lambda p, _start: p in alive)
    assert holder is not None and (holder.pid, holder.epoch) == (1002, 2)


def test_the_fence_refuses_a_changed_epoch_even_with_the_same_token(db_url: str) -> None:
    store = open_store(db_url)
    lease = lease_of(store, 1001, {1001})
    lease.acquire(utcnow())
    write(store)
    with store.write(fenced=False) as conn:
        conn.execute(text("UPDATE lease SET epoch = epoch + 1"))
    with pytest.raises(LeaseLostError):
        write(store)
    assert not lease.held


def test_unrenewed_for_two_thirds_of_the_ttl_a_launch_waits_for_a_renewal_that_must_commit(db_url: str) -> None:
    store, other = open_store(db_url), open_store(db_url)
    ticks, alive = Ticks(), {1001, 1002}
    lease = lease_of(store, 1001, alive, ticks)
    lease.acquire(utcnow())
    within = TTL.total_seconds() / 3
    ticks.value = TTL.total_seconds() * 0.5
    write(store)  # confirms the lease, renews nothing
    lease.confirm(utcnow(), within)  # confirmed a moment ago and renewed 1/2 TTL ago: no renewal needed
    assert not lease.overdue
    ticks.value = TTL.total_seconds() * 0.7
    write(store)  # confirmed again a moment ago, but unrenewed for 0.7 of the TTL...
    assert lease.overdue
    alive.discard(1001)
    lease_of(other, 1002, alive).acquire(utcnow())  # ...and another daemon took over meanwhile
    with pytest.raises(LeaseLostError):  # so the renewal before the launch fails: no launch
        lease.confirm(utcnow(), within)


@pytest.mark.parametrize("skew", [timedelta(days=-1), timedelta(days=1)])
def test_on_postgresql_liveness_is_judged_by_the_databases_clock(db_url: str, skew: timedelta) -> None:
    """Host clocks a day off either way: on PostgreSQL a live leader stays live and is not taken
    over; SQLite (one host) keeps the host's clock, whose skew a single host cannot have."""
    leader_store, other_store = open_store(db_url), open_store(db_url)
    leader = Lease(leader_store, TTL, "schedules.yaml")
    leader.acquire(utcnow() + skew)  # the leader's host clock is off
    leader.heartbeat(utcnow() + skew)
    other_now = utcnow() - skew  # and the other host's the other way
    holder = current_holder(other_store, other_now, TTL)
    if leader_store.is_sqlite:
        # The host's clock decides, skew and all: a day behind expires the leader, a day ahead
        # keeps it a day in the future (which is why high availability needs PostgreSQL).
        assert holder is None if skew < timedelta(0) else holder is not None and holder.heartbeat_age_s < -3600
        return
    assert holder is not None and holder.pid == os.getpid() and abs(holder.heartbeat_age_s) < 5
    with pytest.raises(LeaseHeldError):
        Lease(other_store, TTL, "schedules.yaml", alive=lambda _p, _s: True).acquire(other_now)
    with other_store.read() as conn:
        stored = conn.execute(text("SELECT heartbeat_at FROM lease")).scalar_one()
        database_now = conn.execute(text("SELECT clock_timestamp() AT TIME ZONE 'UTC'")).scalar_one()
    assert abs((database_now - stored).total_seconds()) < 5  # written by the database's clock, not the host's
