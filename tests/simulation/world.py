"""The simulated world the real daemon runs in: a clock, child processes as state machines, the
APScheduler timer, folder watchers and a state database that fails on request.

Everything here stands in for an I/O piece of `scheduler.daemon.shell.Shell`; the daemon's loop,
policies, ledger, lease and audit trail are the real ones, on a real SQLite (or PostgreSQL)
database. A child's behaviour is a pure function of its run key and attempt, so removing an
event from a history never changes how the remaining runs behave (what shrinking needs).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import OperationalError

from scheduler.config.model import Config, Job
from scheduler.policy.file_runs import Dispatch, FileSeen
from scheduler.store.engine import Store
from scheduler.store.outcomes import Outcome
from scheduler.store.schema import runs
from scheduler.watch.seen_files import load_known

START = datetime(2026, 3, 1, 0, 0, 0, tzinfo=timezone.utc)


class Clock:
    """Simulated time: `now` for the daemon's decisions, `monotonic` for its intervals."""

    def __init__(self) -> None:
        self.elapsed = 0.0

    def now(self) -> datetime:
        return START + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


# ---- children ------------------------------------------------------------------------------------

BEHAVIOURS = (
    ("succeed", 64), ("fail", 15), ("hang", 5), ("ignore-term", 2), ("die-silently", 5),
    ("die-after-result", 5), ("cannot-spawn", 4),
)  # fmt: skip


def behaviour_of(run_key: str, attempt: int) -> tuple[str, float]:
    """(what the child does, after how many seconds): a pure function of the launch."""
    digest = int(hashlib.sha256(f"{run_key}#{attempt}".encode()).hexdigest(), 16)
    pick, total = digest % 100, 0
    for name, weight in BEHAVIOURS:
        total += weight
        if pick < total:
            return name, 5 + (digest >> 8) % 150
    raise AssertionError("weights add up to 100")


@dataclass
class Process:
    """A child process: it outlives the daemon that started it (kill -9 of the daemon)."""

    pid: int
    run_id: int
    run_key: str
    attempt: int
    behaviour: str
    ends_at: float  # monotonic; inf while it hangs
    alive: bool = True
    exit_code: int | None = None
    terminated: bool = False

    def advance(self, now: float, world: World) -> None:
        if self.alive and now >= self.ends_at:
            self.alive = False
            if self.terminated:
                world.results[self.run_id] = ("cancelled", "stopped by signal")
                self.exit_code = 1
            elif self.behaviour == "succeed":
                world.results[self.run_id] = ("succeeded", None)
                self.exit_code = 0
            elif self.behaviour in ("fail", "die-after-result"):
                world.results[self.run_id] = ("failed", "asked to fail")
                self.exit_code = 1
            else:
                self.exit_code = 7


@dataclass
class World:
    """What lives outside any one daemon: processes, result files, files in watched folders."""

    clock: Clock
    observer: Store  # reads the database as an outsider would (another connection)
    processes: dict[int, Process] = field(default_factory=dict)
    results: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    launches: list[tuple[str, int, int]] = field(default_factory=list)  # (run key, attempt, run id)
    violations: list[str] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)  # watch job -> file names, in arrival order
    dead_daemons: set[int] = field(default_factory=set)
    _pids: Iterator[int] = field(default_factory=lambda: itertools.count(50_000))

    def pid(self) -> int:
        return next(self._pids)

    def advance(self) -> None:
        for process in self.processes.values():
            process.advance(self.clock.monotonic(), self)

    def alive(self, pid: int, _start: str | None = None) -> bool:
        """/proc as the simulated daemons see it: children, and daemons not killed."""
        if pid in self.dead_daemons:
            return False
        process = self.processes.get(pid)
        return process.alive if process is not None else pid < 50_000


@dataclass
class Handle:
    run_id: int
    pid: int
    job: str
    started: float
    adopted: bool = False
    stopping_since: float | None = None
    stop_reason: str | None = None
    stop_status: str = "cancelled"
    pid_start: str | None = None


class SimRunner:
    """`scheduler.runs.runner.Runner` over simulated processes (same contract, no OS)."""

    def __init__(self, world: World, kill_grace: float, runs_dir: Path) -> None:
        self.world = world
        self.kill_grace = kill_grace
        self.runs_dir = runs_dir
        self.children: dict[int, Handle] = {}
        self.repairs: dict[int, float] = {}

    def run_dir(self, run_id: int) -> Path:
        return self.runs_dir / str(run_id)

    def running(self, job: str) -> int:
        return sum(child.job == job for child in self.children.values())

    @property
    def active(self) -> int:
        return len(self.children)

    def overdue(self, timeouts: Mapping[str, float | None]) -> list[Handle]:
        now = self.world.clock.monotonic()
        return [
            child
            for child in self.children.values()
            if child.stopping_since is None and (limit := timeouts.get(child.job)) and now - child.started > limit
        ]

    def start(self, run_id: int, spec: dict[str, Any]) -> Handle:
        with self.world.observer.read() as conn:
            row = conn.execute(select(runs.c.status, runs.c.attempt).where(runs.c.id == run_id)).one()
        behaviour, seconds = behaviour_of(spec["run_key"], row.attempt)
        if behaviour == "cannot-spawn":
            raise OSError(24, "Too many open files")
        if row.status != "running":
            self.world.violations.append(f"launched run {run_id} ({spec['run_key']}) while it was {row.status}")
        self.world.launches.append((spec["run_key"], row.attempt, run_id))
        now = self.world.clock.monotonic()
        hangs = behaviour in ("hang", "ignore-term")
        process = Process(self.world.pid(), run_id, spec["run_key"], row.attempt, behaviour,
                          float("inf") if hangs else now + seconds)  # fmt: skip
        self.world.processes[process.pid] = process
        self.children[run_id] = handle = Handle(run_id, process.pid, spec["job"], now)
        return handle

    def adopt(self, run_id: int, pid: int, pid_start: str | None, job: str = "", running_for: float = 0.0) -> bool:
        if not self.world.alive(pid) or pid not in self.world.processes:
            return False
        started = self.world.clock.monotonic() - running_for
        self.children[run_id] = Handle(run_id, pid, job, started, adopted=True)
        return True

    def collect_orphan(self, run_id: int) -> Outcome:
        found = self.world.results.get(run_id)
        if found is not None:
            return Outcome(run_id, found[0], error=found[1])
        return Outcome(run_id, "lost", error="the daemon stopped while this run was active and its process is gone")

    def repair(self, run_id: int, zenml_run_name: str) -> None:
        self.repairs[run_id] = self.world.clock.monotonic()

    def poll_repairs(self) -> list[tuple[int, dict[str, Any] | None]]:
        done = [(run_id, {"found": False, "action": "none"}) for run_id in self.repairs]
        self.repairs.clear()
        return done

    def poll(self) -> list[Outcome]:
        finished = []
        for run_id, child in list(self.children.items()):
            process = self.world.processes[child.pid]
            if process.alive:
                self._escalate(child, process)
                continue
            del self.children[run_id]
            finished.append(self._outcome(child, process))
        return finished

    def _outcome(self, child: Handle, process: Process) -> Outcome:
        result = self.world.results.get(child.run_id)
        if result is not None:
            status, error = result
            if child.stop_reason and status != "succeeded":
                return Outcome(child.run_id, child.stop_status, process.exit_code, error=child.stop_reason)
            return Outcome(child.run_id, status, process.exit_code, error=error)
        if child.stop_reason:
            return Outcome(child.run_id, child.stop_status, process.exit_code, error=child.stop_reason)
        if child.adopted:
            return Outcome(child.run_id, "lost", error="the run's process ended without reporting a result")
        return Outcome(child.run_id, "failed", process.exit_code, error="child exited without reporting a result")

    def stop(self, run_id: int, reason: str, status: str = "cancelled") -> None:
        child = self.children.get(run_id)
        if child is None or child.stopping_since is not None:
            return
        child.stopping_since, child.stop_reason, child.stop_status = self.world.clock.monotonic(), reason, status
        process = self.world.processes[child.pid]
        if process.behaviour != "ignore-term":
            process.terminated = True
            process.ends_at = min(process.ends_at, self.world.clock.monotonic() + 1)

    def stop_all(self, reason: str) -> None:
        for run_id in list(self.children):
            self.stop(run_id, reason)

    def _escalate(self, child: Handle, process: Process) -> None:
        if child.stopping_since is not None and self.world.clock.monotonic() - child.stopping_since > self.kill_grace:
            process.terminated, process.ends_at = True, self.world.clock.monotonic()  # SIGKILL


# ---- the timer and the watchers ----------------------------------------------------------------


class SimTimer:
    """APScheduler as the daemon uses it: each due slot of each timed job handed over, in order."""

    def __init__(self, sink: Callable[[str, list[datetime]], None], clock: Clock) -> None:
        self.sink = sink
        self.clock = clock
        self.timed: dict[str, tuple[Job, datetime]] = {}
        self.running = False

    def put(self, job: Job, first: datetime | None) -> None:
        self.timed.pop(job.name, None)
        if first is not None:
            self.timed[job.name] = (job, first)

    def remove(self, name: str) -> None:
        self.timed.pop(name, None)

    def start(self) -> None:
        self.running = True

    def stop(self, timeout: float = 0) -> None:
        self.running = False

    def advance(self) -> None:
        if not self.running:
            return
        now = self.clock.now()
        for name, (job, due) in list(self.timed.items()):
            slots = []
            while due is not None and due <= now:
                slots.append(due)
                due = job.trigger.next_after(due)
            if slots:
                self.sink(name, slots)
            if due is None:
                self.timed.pop(name)
            else:
                self.timed[name] = (job, due)


class SimWatchers:
    """Folder watchers: at start (and on resume) every file not recorded yet is dispatched, like
    the real start-up scan; a file that lands is dispatched at once (settle is not simulated)."""

    def __init__(self, store: Store, emit: Callable[[Any], None], world: World) -> None:
        self.store = store
        self.emit = emit
        self.world = world
        self.watching: set[str] = set()
        self.root = Path("/sim/incoming")

    def sync(self, config: Config) -> None:
        wanted = {name for name, job in config.jobs.items() if job.is_watch and job.spec.enabled}
        for name in wanted - self.watching:
            self.watching.add(name)
            self.rescan(name)
        self.watching &= wanted

    def rescan(self, job: str) -> None:
        if job not in self.watching:
            return
        with self.store.read() as conn:
            known = load_known(conn, job, details=False)
        for name in self.world.files.get(job, []):
            if name not in known:
                self.emit(self.dispatch(job, name))

    def landed(self, job: str, name: str) -> None:
        if job in self.watching:
            self.emit(self.dispatch(job, name))

    def dispatch(self, job: str, name: str) -> Dispatch:
        return Dispatch(job, (FileSeen(name, str(self.root / name), size=len(name), mtime_ns=1),))

    def hand_back(self, dispatch: Dispatch) -> None:
        """A paused job's files: found again by the rescan that follows the resume."""

    def stop_all(self) -> None:
        self.watching.clear()

    def __len__(self) -> int:
        return len(self.watching)


class NoServices:
    """No API, no metrics, no webhooks: the side threads are tested on their own."""

    api_url = None

    def bind(self) -> None: ...

    def start(self) -> None: ...

    def stop_api(self) -> None: ...

    def stop(self) -> None: ...


# ---- the state database, failing on request ---------------------------------------------------


class Crash(BaseException):
    """kill -9 in the middle of a step: nothing after this point happens."""


_COMPILED: dict[Any, Any] = {}


class FaultyStore(Store):
    """A Store whose next write can fail: before anything is written, after it committed (the
    caller cannot tell the two apart), or by killing the daemon in the middle of it."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # Every simulated daemon is a new engine; they share compiled statements (a process would
        # warm its own cache once, a simulation starts dozens of daemons).
        self.engine = self.engine.execution_options(compiled_cache=_COMPILED)
        self.armed: str | None = None  # "before" | "after" | "crash"
        self.interleaved: list[tuple[int, Callable[[], None]]] = []  # (writes to wait, what another thread does)

    def interleave(self, after_writes: int, action: Callable[[], None]) -> None:
        """Let another thread of the daemon (the API) take the write lock before the daemon's
        `after_writes`-th next write transaction: that is where such a thread can slip in."""
        self.interleaved.append((after_writes, action))

    @contextmanager
    def write(self, fenced: bool = True) -> Iterator[Connection]:
        due = [action for wait, action in self.interleaved if wait <= 0]
        self.interleaved = [(wait - 1, action) for wait, action in self.interleaved if wait > 0]
        for action in due:
            action()
        armed, self.armed = self.armed, None
        if armed == "before":
            raise OperationalError("BEGIN", {}, Exception("simulated: the database is away"))
        if armed == "crash":
            raise Crash()
        with super().write(fenced) as conn:
            yield conn
        if armed == "after":
            raise OperationalError("COMMIT", {}, Exception("simulated: the connection dropped after commit"))
