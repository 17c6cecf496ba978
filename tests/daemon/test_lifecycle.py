"""The daemon in process (the simulation's world around the real loop): a start-up that fails
half-way cleans up, the API port is taken only with the lease, a stalled daemon that lost its
lease records nothing, and repairs start only once their outcome is committed."""

from __future__ import annotations

import socket
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from scheduler.config.loader import load_config
from scheduler.config.settings import Settings
from scheduler.daemon.lease import Lease, current_holder
from scheduler.daemon.loop import Daemon
from scheduler.daemon.services import Services
from scheduler.errors import LeaseHeldError
from scheduler.policy.keys import manual_run_key
from scheduler.store import audit, inbox
from scheduler.store.engine import open_store
from scheduler.store.schema import runs
from scheduler.timing.clock import utcnow
from tests.simulation.harness import Simulation
from tests.simulation.world import NoServices, SimRunner


class _BrokenServices(NoServices):
    def start(self) -> None:
        raise RuntimeError("the API server did not start")


def test_a_start_that_fails_half_way_gives_the_lease_back_on_the_record(tmp_path: Path) -> None:
    sim = Simulation(f"sqlite:///{tmp_path / 'state.db'}", tmp_path)
    sim.services = _BrokenServices
    with pytest.raises(RuntimeError, match="did not start"):
        sim.start()
    with sim.cli.read() as conn:
        events = [e["event"] for e in audit.query(conn, limit=1000)]
    assert events[0] == "daemon-started" and events[-1] == "daemon-stopped"
    assert current_holder(sim.cli, sim.clock.now(), timedelta(seconds=15), sim.world.alive) is None


def test_the_api_port_is_taken_only_once_the_lease_is_held(tmp_path: Path) -> None:
    config_path = tmp_path / "schedules.yaml"
    config_path.write_text("version: 1\njobs:\n  a: {pipeline: x.y:z, every: 1h}\n")
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    Lease(store, timedelta(seconds=15), str(config_path)).acquire(utcnow())  # another daemon (this process)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(_env_file=None, config=config_path, state_dir=tmp_path, api_enabled=True, api_port=port)  # type: ignore[call-arg]
    second = Daemon(settings, load_config(config_path), store, env={})
    assert isinstance(second.services, Services)
    with pytest.raises(LeaseHeldError):
        second.start()
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # free: the refused daemon never bound it


def test_a_daemon_stalled_past_its_lease_records_nothing_when_it_wakes(tmp_path: Path) -> None:
    sim = Simulation(f"sqlite:///{tmp_path / 'state.db'}", tmp_path)
    first = sim.start()
    assert first is not None
    sim.pass_time(30)
    first.stalled_until = float("inf")  # SIGSTOP
    sim.pass_time(40)  # a second daemon takes over once the lease has lapsed
    [second] = [node for node in sim.nodes if node is not first]
    with sim.cli.write() as conn:
        inbox.add_request(
            conn, "every-min", manual_run_key("every-min", sim.clock.now(), "w"), {}, "cli", sim.clock.now(), None
        )
    first.timer.advance()  # its timer thread wakes too, with the slots it missed
    launches = len(sim.world.launches)
    first.stalled_until = None  # SIGCONT
    sim.step(first)
    assert first not in sim.nodes and "lost its lease" in sim.log[-2]
    assert len(sim.world.launches) == launches  # it launched nothing
    with sim.cli.read() as conn:
        sources = {e["source"] for e in audit.query(conn, limit=10_000) if e["event"] == "daemon-stopped"}
    assert sources == set()  # nor wrote into the trail of the daemon that holds the lease now
    assert second in sim.nodes


class _LockCheckingRunner(SimRunner):
    """Notes whether the state database was write-locked when a repair process was started."""

    locked_during_repair: list[bool]
    database: str

    def repair(self, run_id: int, zenml_run_name: str) -> None:
        conn = sqlite3.connect(self.database, timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            self.locked_during_repair.append(False)
        except sqlite3.OperationalError:
            self.locked_during_repair.append(True)
        finally:
            conn.close()
        super().repair(run_id, zenml_run_name)


def test_repairs_start_after_their_outcome_is_committed(tmp_path: Path) -> None:
    sim = Simulation(f"sqlite:///{tmp_path / 'state.db'}", tmp_path)
    node = sim.start()
    assert node is not None
    with sim.cli.write() as conn:
        inbox.add_request(
            conn, "queued", manual_run_key("queued", sim.clock.now(), "r"), {}, "cli", sim.clock.now(), None
        )
    sim.pass_time(5)
    with sim.cli.read() as conn:
        run = conn.execute(select(runs).where(runs.c.status == "running", runs.c.job == "queued")).one()
    sim.kill(node)
    sim.world.processes[run.pid].alive = False  # the child died with the daemon: lost, and repaired
    checked: list[bool] = []
    _LockCheckingRunner.locked_during_repair = checked
    _LockCheckingRunner.database = str(tmp_path / "state.db")
    sim.runner = _LockCheckingRunner
    assert sim.start() is not None  # recovery settles the lost run inside the start-up transaction
    assert checked == [False]
