"""Run the real `Daemon` through a history of world events under simulated time.

Daemons here are what separate processes would be: each has its own store (engine), runner,
timer and watchers, and a pid of its own; they share the state database and the simulated
world (children outlive the daemon that started them). Between events every live daemon takes
steps as its main loop would (`Daemon.step`), and the invariants are checked after each event.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from scheduler.config.loader import load_config
from scheduler.config.model import Config
from scheduler.config.settings import Settings
from scheduler.daemon.lease import Lease
from scheduler.daemon.loop import Daemon
from scheduler.daemon.reloader import Reloader
from scheduler.daemon.shell import Shell
from scheduler.errors import ConfigError, LeaseHeldError, LeaseLostError
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import api_run_key, manual_run_key
from scheduler.store import fires, inbox
from scheduler.store.engine import open_store
from scheduler.store.migrations import migrate
from scheduler.store.outcomes import clear_errors
from scheduler.store.run_records import latest_attempt
from tests.simulation import invariants
from tests.simulation.events import JOBS, WATCH_JOB, Event
from tests.simulation.world import Clock, Crash, FaultyStore, NoServices, SimRunner, SimTimer, SimWatchers, World

log = logging.getLogger(__name__)

STEP_S = 5.0  # how far time moves between two steps of a daemon while it passes
LEASE_TTL = 15.0
RESTART_AFTER_S = 5.0  # a supervisor (systemd) starts a daemon again this long after it died

BASE = """\
version: 1
jobs:
  every-min: {pipeline: sim.p:p, every: 1m, retries: {max: 1, backoff: 30s}, parameters: {v: 0}}
  queued: {pipeline: sim.p:p, every: 2m, concurrency: queue, max_queued: 2}
  swap: {pipeline: sim.p:p, every: 3m, concurrency: replace}
  fanout: {pipeline: sim.p:p, every: 1m, concurrency: allow, max_active: 2, catchup: all, max_catchup: 5}
  limited: {pipeline: sim.p:p, every: 2m, max_runs: 3}
  timed: {pipeline: sim.p:p, every: 5m, timeout: 90s, retries: {max: 2, backoff: 10s}, pause_after_failures: 3}
  files: {pipeline: sim.p:p, watch: {path: incoming}, parameters: {input_path: "{path}"}}
  after-every: {pipeline: sim.q:after, after: {job: every-min, status: [succeeded, failed, cancelled, timed_out, lost]},
                concurrency: allow, parameters: {upstream: "{upstream.run_key}"}}
"""
EXTRA = "  extra: {pipeline: sim.p:p, every: 1m, concurrency: queue}\n"
VARIANTS = {
    "base": BASE,
    "params": BASE.replace("parameters: {v: 0}", "parameters: {v: 1}"),
    "add-extra": BASE + EXTRA,
    "remove-extra": BASE,
    "invalid": BASE + "  broken: {pipeline: sim.p:p, every: 1m, every: 2m}\n",
    "check-timeout": BASE + "# sim: the pipeline check hangs\n",
    "check-crash": BASE + "# sim: the pipeline check crashes\n",
}


def sim_check(config: Config) -> Config:
    """The pipeline check, as the world decides it goes."""
    text = config.path.read_text()
    if "check hangs" in text:
        raise subprocess.TimeoutExpired(["python", "-m", "scheduler.child.check"], 300)
    if "check crashes" in text:
        raise RuntimeError("the checker died")
    return config


def in_line(work: Callable[[], None]) -> None:
    """The reloader's thread, run at once: what escapes it ends the thread, as it would."""
    try:
        work()
    except Exception as exc:
        log.warning("reload thread died: %s", exc)


@dataclass
class Node:
    """One daemon process."""

    daemon: Daemon
    pid: int
    sent: list[tuple[str, ...]]  # what it told systemd
    stalled_until: float | None = None
    stopping: bool = False
    stepped: bool = False

    @property
    def store(self) -> FaultyStore:
        return self.daemon.store  # type: ignore[return-value]

    @property
    def runner(self) -> SimRunner:
        return self.daemon.runner  # type: ignore[no-any-return]

    @property
    def timer(self) -> SimTimer:
        return self.daemon.timer  # type: ignore[no-any-return]

    @property
    def watchers(self) -> SimWatchers:
        return self.daemon.watchers  # type: ignore[no-any-return]


@dataclass
class Simulation:
    db_url: str
    folder: Path
    clock: Clock = field(default_factory=Clock)
    nodes: list[Node] = field(default_factory=list)
    dead_since: float | None = 0.0
    presence: dict[str, list[list[datetime | None]]] = field(default_factory=dict)  # job -> [[from, until]]
    log: list[str] = field(default_factory=list)
    stopped_firing: list[datetime] = field(default_factory=list)  # a daemon stopped firing (stop, crash, stall)
    services: Callable[[], Any] = NoServices  # what each daemon's side services are
    runner: type[SimRunner] = SimRunner

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = self.folder / "schedules.yaml"
        self.config_path.write_text(BASE)
        self.cli = open_store(self.db_url)  # another process: the CLI, never fenced
        self.world = World(self.clock, self.cli)
        self.settings = Settings(
            _env_file=None, config=self.config_path, db_url=self.db_url, state_dir=self.folder / "state",
            misfire_grace=600, max_concurrent_runs=3, shutdown_grace=30, kill_grace=10, lease_ttl=LEASE_TTL,
            python=sys.executable,
        )  # type: ignore[call-arg]  # fmt: skip

    # ---- daemons ----------------------------------------------------------------------------------
    @property
    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.stalled_until is None]

    def start(self) -> Node | None:
        try:
            config = load_config(self.config_path)
        except ConfigError:  # the operator puts a valid file back before the restart
            self.config_path.write_text(BASE)
            config = load_config(self.config_path)
        store = FaultyStore(self.db_url)
        with store.write(fenced=False) as conn:
            migrate(conn)
        pid, clock, world = self.world.pid() - 40_000, self.clock, self.world
        shell = Shell(
            runner=lambda settings, _config, _env: self.runner(world, settings.kill_grace, self.folder / "runs"),
            timer=lambda sink: SimTimer(sink, clock),
            watchers=lambda store_, emit: SimWatchers(store_, emit, world),
            services=lambda daemon: self.services(),
            reloader=lambda settings, config_, check: Reloader(
                config_.path, settings.python, True, check=sim_check, spawn=in_line
            ),
            lease=lambda store_, settings, config_, mono: Lease(
                store_,
                timedelta(seconds=settings.lease_ttl),
                str(config_.path),
                pid=pid,
                alive=world.alive,
                monotonic=mono,
                clock="host",  # simulated time, also when the simulated world's database is PostgreSQL
            ),
            monotonic=clock.monotonic,
            signals=False,
        )
        daemon = Daemon(self.settings, config, store, now=clock.now, env={}, shell=shell)
        sent: list[tuple[str, ...]] = []
        daemon.notifier.address = "@sim"
        daemon.notifier.send = lambda *fields: sent.append(fields)  # type: ignore[method-assign]
        try:
            daemon.start()
        except LeaseHeldError:
            store.close()
            self.log.append("start refused: the lease is held")
            return None
        except (DBAPIError, Crash):
            store.close()
            return None
        node = Node(daemon, pid, sent)
        self.nodes.append(node)
        self.dead_since = None
        self.log.append(f"daemon {pid} started")
        return node

    def kill(self, node: Node) -> None:
        """kill -9: no clean-up at all; its children run on."""
        if node not in self.nodes:
            return
        if not node.stopping and node.stalled_until is None:  # else it stopped firing before
            self.stopped_firing.append(self.clock.now())
        self.nodes.remove(node)
        self.world.dead_daemons.add(node.pid)
        node.store.engine.dispose()
        self.log.append(f"daemon {node.pid} killed")
        if not self.nodes:
            self.dead_since = self.clock.elapsed

    def end(self, node: Node) -> None:
        """The process exits after `Daemon.run` returned or raised (its finally: close)."""
        with contextlib.suppress(DBAPIError, LeaseLostError, Crash):
            node.daemon.close()
        self.kill(node)

    def step(self, node: Node) -> None:
        node.timer.advance()
        try:
            done = node.daemon.step(self.clock.now())
        except LeaseLostError:
            self.log.append(f"daemon {node.pid} lost its lease and stops")
            self.end(node)
            return
        except Crash:
            self.kill(node)
            return
        node.stepped = True
        if done:
            self.end(node)

    def freeze(self, node: Node, seconds: float) -> None:
        """`node` stops dead where it is, in the middle of a step, while the world goes on."""
        if node not in self.nodes or node.stalled_until is not None:
            return
        node.stalled_until = float("inf")
        self.stopped_firing.append(self.clock.now())
        self.pass_time(seconds)
        if node in self.nodes:
            node.stalled_until = None  # it continues the step it was in

    def pass_time(self, seconds: float) -> None:
        remaining = seconds
        while remaining > 0:
            chunk = min(STEP_S, remaining)
            remaining -= chunk
            self.clock.advance(chunk)
            self.world.advance()
            for node in list(self.nodes):
                if node.stalled_until is not None and self.clock.monotonic() >= node.stalled_until:
                    node.stalled_until = None  # SIGCONT
            for node in self.live:
                self.step(node)
            self._supervise()

    def _supervise(self) -> None:
        if not self.live and self.dead_since is not None and self.clock.elapsed - self.dead_since >= RESTART_AFTER_S:
            self.start()
        if self.nodes and all(node.stalled_until is not None for node in self.nodes):
            self.start()  # another daemon (a standby, an operator) tries while this one is frozen

    # ---- events -----------------------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        kind, args = event[0], event[1:]
        node = self.live[0] if self.live else None
        now = self.clock.now()
        if kind == "advance":
            self.pass_time(args[0])
            return
        if kind == "cli-trigger" and args[0] in self._jobs():
            with self.cli.write() as conn:
                inbox.add_request(conn, args[0], manual_run_key(args[0], now, args[1]), {}, "cli:sim", now, None)
        elif kind == "api-trigger" and node is not None and args[0] in self._jobs():
            job, key, nonce, after_writes = args
            node.store.interleave(after_writes, lambda: self._api_trigger(node, job, key, nonce))
        elif kind == "cli-burst" and args[0] in self._jobs():
            with self.cli.write() as conn:
                for n in range(args[2]):
                    run_key = manual_run_key(args[0], now, f"{args[1]}.{n}")
                    inbox.add_request(conn, args[0], run_key, {}, "cli:sim", now, None)
        elif kind in ("pause", "resume"):
            with self.cli.write() as conn:
                inbox.set_paused(conn, args[0], kind == "pause", "cli:sim", now)
        elif kind == "clear-errors":
            with self.cli.write() as conn:
                clear_errors(conn, args[0], "cli:sim", now)
        elif kind == "reload":
            self.config_path.write_text(VARIANTS[args[0]])
            for each in self.live:
                each.daemon.signals.request_reload()
        elif kind == "file":
            self.world.files.setdefault(WATCH_JOB, []).append(args[0])
            for each in self.nodes:  # a frozen daemon's inotify events wait for it in the kernel
                each.watchers.landed(WATCH_JOB, args[0])
        elif kind == "fault" and node is not None:
            store, how = node.store, args[0]
            store.interleave(args[1] if len(args) > 1 else 0, lambda: setattr(store, "armed", how))
        elif kind == "crash" and node is not None:
            self.kill(node)
        elif kind == "crash-mid-step" and node is not None:
            node.store.armed = "crash"
        elif kind == "stall" and node is not None:
            node.stalled_until = self.clock.monotonic() + args[0]
            self.stopped_firing.append(now)
        elif kind == "stall-mid-step" and node is not None:
            node.store.interleave(args[0], lambda: self.freeze(node, args[1]))
        elif kind == "stop" and node is not None and not node.stopping:
            node.stopping = True
            node.daemon.signals.request_stop()
            self.stopped_firing.append(now)
        elif kind == "start":
            self.start()
        self.pass_time(1)  # the daemons notice within their next step

    def _jobs(self) -> set[str]:
        try:
            return set(load_config(self.config_path).jobs)
        except ConfigError:
            return set(JOBS)

    def _api_trigger(self, node: Node, job: str, key: str | None, nonce: str) -> None:
        """What the API's trigger recorder does: replay a known Idempotency-Key, else fire and hand over."""
        now = self.clock.now()
        run_key = api_run_key(job, key) if key else manual_run_key(job, now, nonce)
        try:
            with node.store.write() as conn:
                if latest_attempt(conn, run_key) is not None:
                    return
                request = FireRequest(job, "manual", run_key, "api:sim")
                result = fires.fire(conn, [request], node.daemon.config, now, node.daemon.grace)
        except (DBAPIError, LeaseLostError, Crash):
            return  # the client gets a 5xx and may retry
        node.daemon.handover.put(result)

    # ---- the run ------------------------------------------------------------------------------------
    def observe(self) -> None:
        """When each job entered and left the applied config (what slots are owed)."""
        for name, removed in invariants.job_rows(self.cli):
            spans = self.presence.setdefault(name, [])
            if removed is None and (not spans or spans[-1][1] is not None):
                spans.append([self.clock.now(), None])
            elif removed is not None and spans and spans[-1][1] is None:
                spans[-1][1] = removed

    def close(self) -> None:
        for node in list(self.nodes):
            node.store.engine.dispose()
        self.cli.close()


def run(events: list[Event], db_url: str, folder: Path, check_every: int = 20) -> list[str]:
    """Violations found while `events` happen (none: every invariant held throughout)."""
    sim = Simulation(db_url, folder)
    try:
        sim.start()
        sim.observe()
        for index, event in enumerate(events):
            sim.apply(event)
            sim.observe()
            found = invariants.after_step(sim)
            if index % check_every == 0:
                found += invariants.of_the_record(sim)
            if found:
                return [f"after event {index} {event!r}: {v}" for v in found]
        if not sim.live:
            sim.start()
        for node in list(sim.nodes):
            node.stalled_until = None
        sim.pass_time(2 * sim.settings.misfire_grace / 10)  # let what is due settle
        sim.observe()
        return invariants.after_step(sim) + invariants.of_the_record(sim) + invariants.at_the_end(sim)
    finally:
        sim.close()
