"""How many API triggers the daemon accepts per second, how fast, and what that does to firing.

    /work/main/.venv/bin/python bench/api.py [--quick] [--concurrency N] [--profile] [--output PATH] [--strict]

Run it with the project's virtualenv interpreter: it starts that environment's `zenml-scheduler`
and bench/api_floor.py with the same Python. A full run takes about a minute and a half on a 2-core
machine (half a minute more for the profile, taken when a main target is missed) and writes its
table to bench/results-api.md; `--quick` shrinks every window and skips the spawn-each rows and the
other concurrencies, for a CI smoke run (about 25 s), and writes nothing unless --output is given.
`--profile` also profiles the daemon under the load (in a full run the spawn-each load too) and
times `ApiBackend.trigger` in process (a full run does so anyway when a main target is
missed). `--strict` exits 1 when a row FAILs.

The load generator is this process: N threads (default 8, fixed so runs compare), each with one
keep-alive `http.client` connection on loopback, sending `POST /v1/jobs/hit/runs` with body `{}`,
a trigger-scope API key and a fresh `Idempotency-Key`, the next request as soon as the answer is
read (closed loop). A broken connection is retried with the same key (an idempotent retry), so
every key names one run.

The load model: a backlog. Real pipeline runs take minutes, so a burst of API triggers queues runs
that then execute at the pace the job's concurrency allows. The triggered job `hit` therefore has
`concurrency: queue`, `max_queued: 1000000` and `parameters: {sleep_s: 3600}` (the fake child
sleeps that long), and max_concurrent_runs is 4: the first trigger (of the warm-up) starts one long
run and every further accepted trigger is recorded as a queued run behind it. So the figures are
the API's: on this 2-core machine every fake child costs ~15-20 ms of CPU to start (python -S), so
a child per trigger at 300/s would need more than the two cores by itself, and the daemon's main
loop would spend its time launching them. That older shape is kept as secondary rows, labelled
"spawn each:" (full run only, a 3 s window, reported without targets): `hit` with `concurrency:
allow`, no sleep and max_concurrent_runs 64, so every accepted trigger becomes a child at once.

1. Throughput and latency: accepted (202) triggers per second and latency p50/p99 over the load
   window; right after it the state database (read-only) must hold one run row per key sent.
2. Idempotent retries: every key of the window is sent again at once; each replay must answer
   202 with `Idempotent-Replayed: true`, and no run row may be added.
3. Baseline in the same run: the same load generator against bench/api_floor.py, a bare FastAPI
   app on uvicorn, served the way scheduler/api/server.py serves, that returns 202 with a small
   JSON: the HTTP floor of this machine.
4. The backlog: `hit`'s runs right after the window must be one running and every other one
   queued, and every slot of `tick` (below) in the window must have been launched: the launcher
   takes turns across jobs, so a long queue of one job never holds back another job's runs.
5. Fire lag: the config's `tick` job fires `every: 1s`; its lag (child's first statement - slot)
   over an idle window before the load is compared with its lag over the load window, in which
   the same main loop records the triggers' hand-overs and looks at the growing queue.
6. RSS of the daemon with the API after the load, against the same daemon without `--api`.
7. Spawn each (full run): throughput, latency, CPU per request and fire lag (own idle and load
   windows) of the older model, and how long its children took to drain after the window.

A full run also tries 4 and 16 connections (3 s each) against the floor and one daemon with the
backlog config (whose queue grows from window to window). When a main target is missed (or with
--profile) it profiles a daemon under the load, every thread under cProfile (`python -m cProfile`
sees only the main thread, and the API answers on other threads), and times `ApiBackend.trigger`
called directly in this process; both go to the notes.

Every daemon gets a fresh directory with its own schedules.yaml and state database, runs with
`--no-check-pipelines` and the API rate limit off, through a 20-line wrapper that names its threads
for the kernel (so that /proc splits its CPU time by thread), and ZENML_SCHEDULER_PYTHON points at
bench/firing.py's fake interpreter: its children log time.time() as their first statement, sleep
`sleep_s` seconds if their parameters say so, write a succeeded result and exit. So the figures are
the scheduler's own cost, not ZenML's. A daemon is stopped with its shutdown grace (5 s, set by
the bench), which then ends the long run.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import itertools
import json
import pstats
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import fastapi
import uvicorn
from firing import (
    CLK_TCK,
    FAR_CRON,
    PYTHON,
    ZENML_SCHEDULER,
    Daemon,
    Notes,
    Row,
    _trim_pstats,
    header,
    install_cleanup,
    load_average,
    ms,
    percentile,
    read_spawns,
    render,
    rss_mb,
    slot_of,
    spawn,
    stop,
    wait_for,
    write_fake,
    write_results,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
FLOOR = str(BENCH_DIR / "api_floor.py")
LAG_JOB = "tick"
API_JOB = "hit"
MAX_RUNS = 4  # max_concurrent_runs of the backlog config: a normal value
SLEEP_S = 3600  # how long a `hit` run lasts in the backlog config: longer than any run of the bench
SPAWN_MAX_RUNS = 64  # max_concurrent_runs, spawn each: far above what the fake children ever need at once

# Runs a console script (argv[1:]) with each thread's name set for the kernel (PR_SET_NAME), so
# that /proc/<pid>/task/*/comm tells the daemon's threads apart: CPU per kind of thread, with no
# profiler. (CPython 3.11 does not name its threads for the kernel itself.)
NAME_THREADS = """import ctypes
import runpy
import sys
import threading

PR_SET_NAME = 15
LIBC = ctypes.CDLL(None)
_bootstrap_inner = threading.Thread._bootstrap_inner


def named(self):
    LIBC.prctl(PR_SET_NAME, self.name.encode()[:15], 0, 0, 0)
    _bootstrap_inner(self)


threading.Thread._bootstrap_inner = named
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# Runs a console script (argv[2:]) with every thread under its own cProfile.Profile and, at exit,
# writes one profile per kind of thread (digits dropped from thread names) into the directory
# argv[1]: `python -m cProfile` sees only the main thread, and the API serves on uvicorn's thread
# and answers triggers on anyio's worker threads.
PROFILE_THREADS = """import cProfile
import os
import pstats
import re
import runpy
import sys
import threading

OUT = sys.argv[1]
sys.argv = sys.argv[2:]
PROFILES = []
_bootstrap_inner = threading.Thread._bootstrap_inner


def profiled(self):
    profile = cProfile.Profile()
    PROFILES.append((self.name, profile))
    profile.enable()
    try:
        _bootstrap_inner(self)
    finally:
        profile.disable()


threading.Thread._bootstrap_inner = profiled
MAIN = cProfile.Profile()
PROFILES.append(("MainThread", MAIN))
MAIN.enable()
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    MAIN.disable()
    groups = {}
    for name, profile in list(PROFILES):
        try:
            stats = pstats.Stats(profile)
        except TypeError:  # a thread that recorded nothing
            continue
        group = re.sub(r"[-_ ]*\\d+$", "", name).replace(" ", "-").replace(":", "-")
        if group in groups:
            groups[group][0].add(stats)
            groups[group][1] += 1
        else:
            groups[group] = [stats, 1]
    os.makedirs(OUT, exist_ok=True)
    for group, (stats, count) in groups.items():
        stats.dump_stats(os.path.join(OUT, "%s.%d.prof" % (group, count)))
"""


# ---- sizes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    load_seconds: float  # the load window against the daemon
    floor_seconds: float  # the load window against the floor
    idle_seconds: float  # the idle window before the load (fire lag without load)
    replay_seconds: float  # at most this long replaying the window's keys
    spawn_seconds: float | None  # spawn each: its idle and load windows (None: not measured)
    drain_timeout: float  # spawn each: how long its children may take to finish after the window
    sweep: tuple[int, ...]  # other client concurrencies tried briefly (full run)


FULL = Sizes(
    load_seconds=10.0, floor_seconds=10.0, idle_seconds=10.0, replay_seconds=10.0, spawn_seconds=3.0,
    drain_timeout=60.0, sweep=(4, 16),
)  # fmt: skip
QUICK = Sizes(
    load_seconds=3.0, floor_seconds=2.0, idle_seconds=3.0, replay_seconds=2.0, spawn_seconds=None,
    drain_timeout=3.0, sweep=(),
)  # fmt: skip
SWEEP_SECONDS = 3.0
WARMUP_REQUESTS = 40
TARGET_RATE = 300.0  # accepted triggers per second
TARGET_P99 = 0.050
LAG_ALLOWANCE = 0.100  # under load, fire lag p99 may exceed the idle p99 by this much
TARGET_RSS = 100.0


# ---- the load generator ---------------------------------------------------------------------
@dataclass
class Sample:
    key: str
    latency: float  # first send -> answer read, retries included
    status: int
    replayed: bool
    retries: int


@dataclass
class LoadResult:
    samples: list[Sample]
    seconds: float  # from the first send to the last answer
    concurrency: int
    errors: list[str] = field(default_factory=list)
    cpu: dict[str, float] | None = None  # the server's CPU seconds in the window: "all", and by thread name

    @property
    def accepted(self) -> list[Sample]:
        return [s for s in self.samples if s.status == 202]

    @property
    def rate(self) -> float:
        return len(self.accepted) / self.seconds if self.seconds else 0.0

    def latencies(self) -> list[float]:
        return [s.latency for s in self.samples]

    def p(self, pct: float) -> float:
        values = self.latencies()
        return percentile(values, pct) if values else float("inf")

    def cpu_ms(self, thread: str = "all") -> float:
        """The server's CPU milliseconds per answered request, in all or in one kind of thread."""
        if self.cpu is None or not self.samples:
            return float("nan")
        return self.cpu.get(thread, 0.0) * 1000 / len(self.samples)

    def cpu_split(self) -> str:
        """CPU per request by kind of thread, biggest first."""
        if self.cpu is None:
            return "-"
        parts = sorted(((self.cpu_ms(name), name) for name in self.cpu if name != "all"), reverse=True)
        return ", ".join(f"{name} {value:.2f}" for value, name in parts if value >= 0.005)

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for s in self.samples:
            counts[s.status] = counts.get(s.status, 0) + 1
        return counts


class Target:
    """Where to send triggers: host, port, path and headers shared by every request."""

    def __init__(self, url: str, job: str, api_key: str | None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = f"/v1/jobs/{job}/runs"
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["X-API-Key"] = api_key


def generate_load(
    target: Target, keys: Iterator[str], concurrency: int, seconds: float, retries: int = 3, pid: int | None = None
) -> LoadResult:
    """`concurrency` threads send one trigger each at a time, a key from `keys` each, until
    `seconds` have passed or `keys` runs out (closed loop: the next request goes when an answer
    came back). With `pid`, also the CPU time that server process spent meanwhile."""
    lock = threading.Lock()
    samples: list[Sample] = []
    errors: list[str] = []
    cpu_before = server_cpu(pid) if pid is not None else None
    started = time.perf_counter()
    deadline = started + seconds
    ends: list[float] = []

    def next_key() -> str | None:
        with lock:
            return next(keys, None)

    def worker() -> None:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=30)
        mine: list[Sample] = []
        last = started
        try:
            while time.perf_counter() < deadline:
                key = next_key()
                if key is None:
                    break
                sample = send(conn, target, key, retries, errors)
                mine.append(sample)
                last = time.perf_counter()
                if sample.status == 0:
                    conn.close()
                    conn = http.client.HTTPConnection(target.host, target.port, timeout=30)
        finally:
            conn.close()
            with lock:
                samples.extend(mine)
                ends.append(last)

    threads = [threading.Thread(target=worker, name=f"load-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    cpu = None
    if pid is not None and cpu_before is not None:
        after = server_cpu(pid)
        cpu = {name: after.get(name, 0.0) - cpu_before.get(name, 0.0) for name in after}
        cpu["(ended threads)"] = cpu["all"] - sum(v for k, v in cpu.items() if k != "all")
    return LoadResult(samples, max(ends, default=started) - started, concurrency, errors, cpu)


def server_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of process `pid` so far: "all", and per kind of live thread ("main", else the
    thread's name, trailing numbers dropped). The daemon's threads have names in /proc when it runs
    under NAME_THREADS; its main thread fires, launches and reaps runs."""
    cpu = {"all": stat_cpu(Path(f"/proc/{pid}/stat"))}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "main" if task.name == str(pid) else (task / "comm").read_text().strip()
            used = stat_cpu(task / "stat")
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
        name = re.sub(r"[-_ ]*\d+$", "", name)
        cpu[name] = cpu.get(name, 0.0) + used
    return cpu


def stat_cpu(path: Path) -> float:
    """utime + stime from a /proc stat file (as firing.cpu_seconds, for a thread too)."""
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def send(conn: http.client.HTTPConnection, target: Target, key: str, retries: int, errors: list[str]) -> Sample:
    """One trigger; a broken connection is retried with the same Idempotency-Key."""
    headers = {**target.headers, "Idempotency-Key": key}
    began = time.perf_counter()
    for attempt in range(retries + 1):
        try:
            conn.request("POST", target.path, body=b"{}", headers=headers)
            response = conn.getresponse()
            response.read()
            replayed = response.getheader("Idempotent-Replayed") == "true"
            return Sample(key, time.perf_counter() - began, response.status, replayed, attempt)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()  # http.client reconnects on the next request
    return Sample(key, time.perf_counter() - began, 0, False, retries)


def fresh_keys(prefix: str) -> Iterator[str]:
    run = uuid.uuid4().hex[:8]
    return (f"{prefix}-{run}-{i:07d}" for i in itertools.count())


def warm_up(target: Target, prefix: str) -> list[str]:
    """A few requests first: lazy imports, pools and caches are not part of the figure."""
    result = generate_load(target, itertools.islice(fresh_keys(prefix), WARMUP_REQUESTS), 4, 30.0)
    bad = {status: n for status, n in result.statuses().items() if status != 202}
    if bad:
        raise RuntimeError(f"warm-up requests to {target.host}:{target.port}{target.path} answered {bad}")
    return [s.key for s in result.samples]


# ---- the floor ------------------------------------------------------------------------------
@contextlib.contextmanager
def floor_server() -> Iterator[tuple[str, int]]:
    """bench/api_floor.py in its own process; yields its base URL and pid."""
    proc = spawn([PYTHON, FLOOR], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("bench/api_floor.py exited before serving")
        yield f"http://127.0.0.1:{json.loads(line)['port']}", proc.pid
    finally:
        stop(proc)


def measure_floor(concurrencies: Sequence[int], seconds: float) -> list[LoadResult]:
    """One load window per concurrency against one floor process."""
    with floor_server() as (url, pid):
        target = Target(url, API_JOB, None)
        warm_up(target, "floor-warmup")
        return [generate_load(target, fresh_keys("floor"), c, seconds, pid=pid) for c in concurrencies]


# ---- the daemon -----------------------------------------------------------------------------
class ApiDaemon(Daemon):
    """The bench daemon with the API rate limit off and, with `api`, the API on a free port; run
    under NAME_THREADS, or with `profile_threads` under PROFILE_THREADS. With `spawn_each`, room
    for a child per trigger (max_concurrent_runs SPAWN_MAX_RUNS)."""

    def __init__(
        self,
        root: Path,
        config: Path,
        *,
        api: bool = True,
        profile_threads: Path | None = None,
        spawn_each: bool = False,
    ) -> None:
        extra = ("--no-check-pipelines", "--api", "--api-port", "0") if api else ("--no-check-pipelines",)
        max_runs = SPAWN_MAX_RUNS if spawn_each else MAX_RUNS
        super().__init__(root, config, write_fake(root), max_runs=max_runs, extra_args=extra)
        self.profile_threads = profile_threads

    def env(self) -> dict[str, str]:
        return {**super().env(), "ZENML_SCHEDULER_API_RATE_LIMIT": "0"}

    def command(self) -> list[str]:
        cmd = super().command()
        if self.profile_threads is not None:
            wrapper = self.root / "profile_threads.py"
            wrapper.write_text(PROFILE_THREADS)
            return [PYTHON, str(wrapper), str(self.profile_threads), *cmd]
        wrapper = self.root / "name_threads.py"
        wrapper.write_text(NAME_THREADS)
        return [PYTHON, str(wrapper), *cmd]

    def create_key(self) -> str:
        """A trigger-scope key, written to the key file in this daemon's state directory."""
        out = subprocess.run(
            [ZENML_SCHEDULER, "api-key", "create", "--name", "bench", "--scope", "trigger", "--json",
             "--config", str(self.config)],
            cwd=self.root, env=self.env(), capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return str(json.loads(out.stdout)["key"])

    def wait_api(self, timeout: float = 30.0) -> str:
        if not wait_for(lambda: self.api_url is not None, timeout, 0.02):
            raise RuntimeError(f"the daemon printed no `HTTP API on` line:\n{self.log_tail()}")
        assert self.api_url is not None
        return self.api_url


def write_config(root: Path, spawn_each: bool = False) -> Path:
    """`tick` every second (the fire-lag probe) and `hit`, never due, triggered over the API: a
    queue of long runs (the backlog model) or, with `spawn_each`, a short run per trigger at once."""
    if spawn_each:
        policy = "    concurrency: allow\n"
    else:
        policy = f"    concurrency: queue\n    max_queued: 1000000\n    parameters:\n      sleep_s: {SLEEP_S}\n"
    path = root / "schedules.yaml"
    path.write_text(
        "version: 1\njobs:\n"
        f"  {LAG_JOB}:\n    pipeline: fakepipes.fake:pipe\n    every: 1s\n"
        f'  {API_JOB}:\n    pipeline: fakepipes.fake:pipe\n    cron: "{FAR_CRON}"\n{policy}'
    )
    return path


@contextlib.contextmanager
def api_daemon(
    prefix: str, profile_threads: Path | None = None, spawn_each: bool = False
) -> Iterator[tuple[ApiDaemon, Target, list[str]]]:
    """A started daemon with the API and a trigger-scope key, warmed up; yields it, its target and
    the warm-up's Idempotency-Keys."""
    with tempfile.TemporaryDirectory(prefix=f"bench-api-{prefix}-") as tmp:
        root = Path(tmp)
        config = write_config(root, spawn_each)
        daemon = ApiDaemon(root, config, profile_threads=profile_threads, spawn_each=spawn_each)
        api_key = daemon.create_key()
        try:
            daemon.start()
            daemon.wait_ready(120)
            target = Target(daemon.wait_api(), API_JOB, api_key)
            yield daemon, target, warm_up(target, "warmup")
        finally:
            daemon.stop()


def vm_hwm_mb(pid: int) -> float:
    """Peak RSS of `pid` so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def api_rows(conn: sqlite3.Connection) -> set[str]:
    query = "SELECT run_key FROM runs WHERE job = ? AND attempt = 1"
    return {row[0] for row in conn.execute(query, (API_JOB,))}


def api_row_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM runs WHERE job = ?", (API_JOB,)).fetchone()[0])


def active_runs(conn: sqlite3.Connection, job: str | None = None) -> int:
    """Runs queued or running, of `job` or of every job."""
    query = "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')"
    if job is None:
        return int(conn.execute(query).fetchone()[0])
    return int(conn.execute(f"{query} AND job = ?", (job,)).fetchone()[0])


def job_statuses(conn: sqlite3.Connection, job: str) -> dict[str, int]:
    query = "SELECT status, count(*) FROM runs WHERE job = ? GROUP BY status"
    return {str(k): int(v) for k, v in conn.execute(query, (job,))}


def settled(conn: sqlite3.Connection) -> bool:
    """The backlog config after the warm-up: `tick` has nothing queued or running and `hit` has
    exactly one run running (its long run; the warm-up's other triggers are queued behind it)."""
    return active_runs(conn, LAG_JOB) == 0 and job_statuses(conn, API_JOB).get("running", 0) == 1


def launched_runs(conn: sqlite3.Connection, job: str) -> int:
    query = "SELECT count(*) FROM runs WHERE job = ? AND started_at IS NOT NULL"
    return int(conn.execute(query, (job,)).fetchone()[0])


@dataclass
class Lags:
    idle: list[float]
    load: list[float]
    missing_idle: int  # slots in the window without a child (skipped, or not started by the end)
    missing_load: int

    @property
    def passed(self) -> bool:
        if not self.idle or not self.load or self.missing_load:
            return False
        return percentile(self.load, 99) <= percentile(self.idle, 99) + LAG_ALLOWANCE


@dataclass
class DaemonResult:
    """The backlog model's load window, replays and what they left in the state database."""

    load: LoadResult
    replay: LoadResult
    keys_sent: int  # distinct Idempotency-Keys sent before the replays, warm-up included
    rows_after_load: int  # runs of `hit`, right after the load window
    rows_after_replay: int
    keys_without_row: int
    lags: Lags
    backlog: dict[str, int]  # `hit`'s runs by status right after the load window
    statuses: dict[str, int]  # `hit`'s runs by status at the end (after the replays)
    tick_outcomes: dict[str, int]  # `tick`'s slots inside the load window, by status (and skip code)
    rss_mb: float
    hwm_mb: float

    @property
    def backlog_ok(self) -> bool:
        """One run of `hit` running and every other one queued; every `tick` slot launched, none skipped."""
        held = self.lags.missing_load or any(not k.startswith(("succeeded", "running")) for k in self.tick_outcomes)
        return (
            self.backlog.get("running", 0) == 1
            and self.backlog.get("queued", 0) == self.rows_after_load - 1
            and not held
        )


@dataclass
class SpawnResult:
    """The spawn-each model: every accepted trigger a child at once (see the docstring)."""

    load: LoadResult
    lags: Lags
    launched_in_load: int  # runs of `hit` started by the end of the load window
    runs: int  # runs of `hit` at the end of the window, warm-up included
    drained_after: float | None  # load end -> no run queued or running
    tick_outcomes: dict[str, int]


def measure_daemon(sizes: Sizes, concurrency: int, notes: Notes) -> DaemonResult:
    """The backlog model: idle window, load window, replays (see the docstring)."""
    with api_daemon("load") as (daemon, target, warm_keys):
        conn = daemon.connect()
        try:
            if not wait_for(lambda: settled(conn), 30, 0.05):
                raise RuntimeError(
                    f"after the warm-up, `{LAG_JOB}` kept a run queued or running, or `{API_JOB}` did not have"
                    f" exactly one running ({job_statuses(conn, API_JOB)}):\n{daemon.log_tail()}"
                )
            idle_start = time.time()
            time.sleep(sizes.idle_seconds)
            load_start = time.time()
            load = generate_load(target, fresh_keys("load"), concurrency, sizes.load_seconds, pid=daemon.pid)
            load_end = time.time()
            backlog = job_statuses(conn, API_JOB)
            rows_after_load = sum(backlog.values())
            replay = generate_load(target, iter([s.key for s in load.samples]), concurrency, sizes.replay_seconds)
            rows_after_replay = api_row_count(conn)
            rows = api_rows(conn)
            statuses = job_statuses(conn, API_JOB)
            outcomes = slot_outcomes(conn, LAG_JOB, load_start, load_end)
        finally:
            conn.close()
        rss, hwm = rss_mb(daemon.pid), vm_hwm_mb(daemon.pid)
        time.sleep(0.3)  # the last tick child may still be writing its line
        lags = tick_lags(daemon, (idle_start, load_start), (load_start, load_end))
    sent = set(warm_keys) | {s.key for s in load.samples}
    missing = sum(f"{API_JOB}@api:{key}" not in rows for key in sent)
    if load.errors or replay.errors:
        first = (load.errors + replay.errors)[0]
        notes.add(
            f"connection errors, retried: {len(load.errors)} in the load, {len(replay.errors)} in replays; {first}"
        )
    return DaemonResult(
        load, replay, len(sent), rows_after_load, rows_after_replay, missing, lags, backlog, statuses, outcomes,
        rss, hwm,
    )  # fmt: skip


def measure_spawn_each(seconds: float, drain_timeout: float, concurrency: int, notes: Notes) -> SpawnResult:
    """The spawn-each model: idle window, load window, then the wait for its children to finish."""
    with api_daemon("spawn", spawn_each=True) as (daemon, target, _):
        conn = daemon.connect()
        try:
            if not wait_for(lambda: active_runs(conn) == 0, 30, 0.05):  # the warm-up's runs
                raise RuntimeError(f"the warm-up's runs never finished:\n{daemon.log_tail()}")
            idle_start = time.time()
            time.sleep(seconds)
            load_start = time.time()
            load = generate_load(target, fresh_keys("spawn"), concurrency, seconds, pid=daemon.pid)
            load_end = time.time()
            launched, runs = launched_runs(conn, API_JOB), api_row_count(conn)
            done = wait_for(lambda: active_runs(conn) == 0, drain_timeout, 0.05)
            drained = time.time() - load_end if done else None
            outcomes = slot_outcomes(conn, LAG_JOB, load_start, load_end)
        finally:
            conn.close()
        time.sleep(0.3)  # the last tick child may still be writing its line
        lags = tick_lags(daemon, (idle_start, load_start), (load_start, load_end))
    if load.errors:
        notes.add(f"spawn each: connection errors, retried: {len(load.errors)}; {load.errors[0]}")
    return SpawnResult(load, lags, launched, runs, drained, outcomes)


def slot_outcomes(conn: sqlite3.Connection, job: str, start: float, end: float) -> dict[str, int]:
    """How `job`'s slots in [start, end) ended: status, and for a skip its code (e.g. concurrency)."""
    stamps = [datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") for t in (start, end)]
    query = (
        "SELECT status || CASE WHEN status = 'skipped' THEN ' (' || substr(reason, 1, instr(reason, ':') - 1) || ')'"
        " ELSE '' END, count(*) FROM runs WHERE job = ? AND attempt = 1 AND scheduled_for >= ? AND scheduled_for < ?"
        " GROUP BY 1"
    )
    return {str(k): int(v) for k, v in conn.execute(query, (job, *stamps))}


def tick_lags(daemon: Daemon, idle: tuple[float, float], load: tuple[float, float]) -> Lags:
    """Fire lag of `tick` for the whole-second slots strictly inside each window."""
    started: dict[float, float] = {}
    for when, key in read_spawns(daemon.spawn_log):
        if key.startswith(f"{LAG_JOB}@"):
            started.setdefault(slot_of(key), when)

    def window(start: float, end: float) -> tuple[list[float], int]:
        slots = [float(s) for s in range(int(start) + 1, int(end) + 1) if s < end]
        lags = [started[s] - s for s in slots if s in started]
        return lags, len(slots) - len(lags)

    idle_lags, idle_missing = window(*idle)
    load_lags, load_missing = window(*load)
    return Lags(idle_lags, load_lags, idle_missing, load_missing)


def measure_rss_without_api() -> float:
    with tempfile.TemporaryDirectory(prefix="bench-api-off-") as tmp:
        root = Path(tmp)
        daemon = ApiDaemon(root, write_config(root), api=False)
        try:
            daemon.start()
            daemon.wait_ready(60)
            time.sleep(1.5)  # a few tick runs, as the API daemon had
            return rss_mb(daemon.pid)
        finally:
            daemon.stop()


def sweep_daemon(concurrencies: Sequence[int]) -> list[tuple[LoadResult, int]]:
    """A short load window per concurrency against one daemon with the backlog config, one after
    the other (the queue grows from window to window); after each, how many runs of `hit` are queued."""
    results = []
    with api_daemon("sweep") as (daemon, target, _):
        conn = daemon.connect()
        try:
            for c in concurrencies:
                load = generate_load(target, fresh_keys(f"sweep{c}"), c, SWEEP_SECONDS)
                results.append((load, job_statuses(conn, API_JOB).get("queued", 0)))
        finally:
            conn.close()
    return results


# ---- profile --------------------------------------------------------------------------------
def profile_daemon(seconds: float, concurrency: int, notes: Notes, spawn_each: bool = False) -> None:
    """The load window again, every thread of the daemon under cProfile; where each kind of thread
    spent its time, and how much of it waiting for the database's write lock."""
    label = "profile, spawn each" if spawn_each else "profile"
    with tempfile.TemporaryDirectory(prefix="bench-api-profile-") as tmp:
        out = Path(tmp) / "profiles"
        with api_daemon("profile", profile_threads=out, spawn_each=spawn_each) as (daemon, target, _):
            load = generate_load(target, fresh_keys("load"), concurrency, seconds)
            conn = daemon.connect()
            try:
                launched, queued = launched_runs(conn, API_JOB), job_statuses(conn, API_JOB).get("queued", 0)
            finally:
                conn.close()
            daemon.stop()  # the profiles are written as it exits
            if not any(out.glob("MainThread.*.prof")):
                notes.add(f"{label}: none written; the daemon's log ends:\n{daemon.log_tail()}")
                return
        runs = f"{launched} of them launched by the end of the window" if spawn_each else f"{queued} runs queued"
        notes.add(
            f"{label} ({concurrency} connections): every daemon thread under cProfile; "
            f"{len(load.accepted)} triggers in {load.seconds:.1f} s ({load.rate:.0f}/s, p50 {ms(load.p(50))}, "
            f"p99 {ms(load.p(99))} under the profiler), {runs} at the end of the window. "
            "Per kind of thread, over the daemon's life (start-up and shutdown included):"
        )
        for path in sorted(out.glob("*.prof"), key=lambda p: (p.name != "MainThread.1.prof", p.name)):
            notes.add("  " + thread_line(path))
        for group, pattern in (
            ("MainThread", "scheduler/"),
            ("api-triggers", "scheduler/"),  # the trigger recorder, where there is one
            ("AnyIO-worker-thread", "scheduler/"),
            ("api", "scheduler/|fastapi/|starlette/|uvicorn/|h11/"),
        ):
            for path in out.glob(f"{group}.*.prof"):
                notes.add(f"{label}, {group}, by cumulative time ({pattern}):")
                notes.add(cumulative_text(path, pattern, top=14))


@dataclass
class Calls:
    """Direct `ApiBackend.trigger` calls from `threads` threads over a window."""

    threads: int
    latencies: list[float]
    seconds: float
    statements: float  # SQL statements per trigger

    def text(self) -> str:
        rate = len(self.latencies) / self.seconds
        return (
            f"{self.threads} thread{'s' if self.threads > 1 else ''} {rate:.0f}/s, "
            f"p50 {ms(percentile(self.latencies, 50))}, p99 {ms(percentile(self.latencies, 99))}"
        )


BACKLOG = 2000  # queued runs for the in-process backlog window
BATCH = 8  # triggers per transaction in the in-process group-commit window


def trigger_in_process(notes: Notes, seconds: float) -> None:
    """`ApiBackend.trigger` called directly in this process, each window on a fresh state database:
    no HTTP, no main loop, no children. What one trigger costs below the HTTP layer, with 1 and 8
    callers, how that grows with a backlog of queued runs, and, for scale, `fires.fire` recording
    BATCH triggers per write transaction."""
    sys.path.insert(0, str(REPO))
    from sqlalchemy import event

    from scheduler.api.backend import ApiBackend
    from scheduler.api.overrides import Overrides
    from scheduler.config.loader import load_config
    from scheduler.policy.fire_request import FireRequest
    from scheduler.policy.keys import api_run_key
    from scheduler.store import fires
    from scheduler.store.catalog import apply_config
    from scheduler.store.engine import open_store

    grace = timedelta(minutes=10)
    keys = fresh_keys("direct")

    def request(key: str) -> FireRequest:
        return FireRequest(API_JOB, "manual", api_run_key(API_JOB, key), "api:bench")

    def window(threads: int, backlog: int = 0, batch: int = 0) -> Calls:
        with tempfile.TemporaryDirectory(prefix="bench-api-direct-") as tmp:
            root = Path(tmp)
            config = load_config(write_config(root))
            store = open_store(f"sqlite:///{root / 'state.db'}")
            now = datetime.now(timezone.utc)
            with store.write() as conn:
                apply_config(conn, config, now, "bench")
                if backlog:
                    fires.fire(conn, [request(next(keys)) for _ in range(backlog)], config, now, grace)
            backend = ApiBackend(store, lambda: config, grace, lambda _: None, lambda: {"scheduler": True})
            helpers = [getattr(backend, name) for name in ("recorder",) if hasattr(backend, name)]
            for helper in helpers:  # a backend that records triggers on a thread of its own
                helper.start()
            try:
                statements = itertools.count()
                event.listen(store.engine, "before_cursor_execute", lambda *_: next(statements))
                latencies: list[float] = []
                deadline = time.perf_counter() + seconds

                def one() -> None:
                    if batch:
                        with store.write() as conn:
                            fires.fire(conn, [request(next(keys)) for _ in range(batch)], config, now, grace)
                    else:
                        backend.trigger(API_JOB, Overrides(), next(keys), "api:bench")

                def work() -> None:
                    mine = []
                    while time.perf_counter() < deadline:
                        began = time.perf_counter()
                        one()
                        mine += [time.perf_counter() - began] * (batch or 1)  # a batch's latency, per trigger
                    latencies.extend(mine)

                began = time.perf_counter()
                pool = [threading.Thread(target=work) for _ in range(threads)]
                for thread in pool:
                    thread.start()
                for thread in pool:
                    thread.join()
                took = time.perf_counter() - began
                return Calls(threads, latencies, took, next(statements) / max(1, len(latencies)))
            finally:
                for helper in helpers:
                    helper.stop()
                store.close()

    single = window(1)
    contended = window(8)
    backlogged = window(1, backlog=BACKLOG)
    batched = window(1, batch=BATCH)
    notes.add(
        f"in process, ApiBackend.trigger called directly (no HTTP, no main loop, no children), {seconds:.0f} s "
        f"windows, each on a fresh database: {single.text()}, {single.statements:.1f} SQL statements per trigger; "
        f"{contended.text()}, {contended.statements:.1f} statements per trigger; 1 thread with {BACKLOG} runs of "
        f"the job already queued: {backlogged.text()}. For scale, fires.fire alone with {BATCH} triggers per "
        f"write transaction (the latency is the batch's): {batched.text()}."
    )


def stat(stats: pstats.Stats, file_end: str, name: str) -> tuple[int, float, float]:
    """(calls, own time, cumulative time) of one function in `stats`, summed over its matches."""
    calls, own, cumulative = 0, 0.0, 0.0
    for (file, _line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if file.endswith(file_end) and func == name:
            calls, own, cumulative = calls + nc, own + tt, cumulative + ct
    return calls, own, cumulative


LOCK_METHODS = tuple(
    f"<method '{method}' of '_thread.{kind}' objects>"
    for kind in ("lock", "RLock")
    for method in ("acquire", "__enter__")
)
IDLE = (*LOCK_METHODS, "<method 'poll' of 'select.epoll' objects>", "<built-in method time.sleep>",
        "<method 'get' of '_queue.SimpleQueue' objects>")  # fmt: skip


def thread_line(path: Path) -> str:
    """One line per kind of thread: how many, busy time, write transactions and the wait for the lock."""
    group, count = path.name.split(".")[:2]
    stats = pstats.Stats(str(path))
    begins, _, in_begin = stat(stats, "scheduler/store/engine.py", "_on_begin")
    # A store that queues its writers on a Python lock waits in `with lock:` inside Store.write,
    # which cProfile books as Store.write's own time (its only other work is a few attribute lookups).
    _, in_lock, _ = stat(stats, "scheduler/store/engine.py", "write")
    _, sql_time, _ = stat(stats, "~", "<method 'execute' of 'sqlite3.Cursor' objects>")
    commits, commit_time, _ = stat(stats, "~", "<method 'commit' of 'sqlite3.Connection' objects>")
    forks, fork_time, _ = stat(stats, "~", "<built-in method _posixsubprocess.fork_exec>")
    triggers, _, trigger_time = stat(stats, "scheduler/api/backend.py", "trigger")
    idle = sum(stat(stats, "~", name)[1] for name in IDLE)
    busy = stats.total_tt - idle - in_begin - in_lock  # type: ignore[attr-defined]
    parts = [f"{group} (x{count}): {busy:.2f} s busy (not waiting on locks, queues, epoll, sleep or the write lock)"]
    if begins:
        waited = in_begin + in_lock
        parts.append(
            f"{begins} write transactions waited {waited:.2f} s for the write lock ({waited / begins * 1000:.1f} ms "
            f"each; in Store.write's lock {in_lock:.2f} s, in BEGIN IMMEDIATE {in_begin:.2f} s); all SQL "
            f"{sql_time:.2f} s; {commits} commits {commit_time:.2f} s"
        )
    if triggers:
        parts.append(f"ApiBackend.trigger {triggers} calls, {trigger_time / triggers * 1000:.1f} ms each")
    if forks:
        parts.append(f"{forks} fork_exec {fork_time:.2f} s ({fork_time / forks * 1000:.1f} ms each)")
    return "; ".join(parts)


def cumulative_text(path: Path, pattern: str, top: int) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.sort_stats("cumulative").print_stats(pattern, top)
    return _trim_pstats(buffer.getvalue())


# ---- rows -----------------------------------------------------------------------------------
def build_rows(floor: LoadResult, ours: DaemonResult, rss_without_api: float, sizes: Sizes) -> list[Row]:
    load, replay, lags = ours.load, ours.replay, ours.lags
    non_202 = {k: v for k, v in load.statuses().items() if k != 202}
    replay_ok = [s for s in replay.samples if s.status == 202 and s.replayed]
    return [
        Row(
            f"Accepted triggers/s, `POST /v1/jobs/{{job}}/runs` with a fresh Idempotency-Key each "
            f"({sizes.load_seconds:.0f} s, {load.concurrency} keep-alive connections, closed loop; `{API_JOB}` has "
            "`concurrency: queue`: each accepted trigger queues a run behind one long run)",
            f"{load.rate:.0f}/s ({len(load.accepted)} of {len(load.samples)})",
            f"{floor.rate:.0f}/s (bare FastAPI + uvicorn, 202 + small JSON)",
            f">= {TARGET_RATE:.0f}/s",
            load.rate >= TARGET_RATE,
        ),
        Row(
            "Trigger latency p50",
            ms(load.p(50)),
            ms(floor.p(50)),
            "-",
            None,
        ),
        Row(
            "Trigger latency p99",
            ms(load.p(99)),
            ms(floor.p(99)),
            f"<= {ms(TARGET_P99)}",
            load.p(99) <= TARGET_P99,
        ),
        Row(
            "Server CPU per answered request in the window, ms (main: the daemon's loop, which fires, launches "
            "and reaps runs; api: uvicorn's event loop; AnyIO worker th: the request handlers; api-triggers: "
            "the trigger recorder, where present)",
            f"{load.cpu_ms():.1f} ms; by thread: {load.cpu_split()}",
            f"{floor.cpu_ms():.1f} ms",
            "-",
            None,
        ),
        Row(
            "Answers other than 202; run rows right after the window vs distinct keys sent (warm-up included)",
            f"{sum(non_202.values())}{' ' + str(non_202) if non_202 else ''}; {ours.rows_after_load} rows, "
            f"{ours.keys_sent} keys, {ours.keys_without_row} keys without a row",
            "-",
            "0; rows = keys",
            not non_202 and ours.rows_after_load == ours.keys_sent and ours.keys_without_row == 0,
        ),
        Row(
            f"Backlog right after the window: `{API_JOB}` runs queued / running; `{LAG_JOB}`'s slots in the window "
            "(the launcher takes turns across jobs, so the queue must not hold them back)",
            f"{ours.backlog.get('queued', 0)} queued / {ours.backlog.get('running', 0)} running; `{LAG_JOB}`: "
            f"{fmt_outcomes(ours.tick_outcomes)}, {lags.missing_load} without a child",
            "-",
            "all but 1 queued; every slot run",
            ours.backlog_ok,
        ),
        Row(
            f"Idempotent retries: the window's keys sent again at once ({len(replay.samples)} replays, "
            f"{replay.rate:.0f}/s): 202 with `Idempotent-Replayed: true`; run rows added",
            f"{len(replay_ok)} of {len(replay.samples)}; {ours.rows_after_replay - ours.rows_after_load} added",
            "-",
            "all; 0",
            len(replay_ok) == len(replay.samples) > 0 and ours.rows_after_replay == ours.rows_after_load,
        ),
        Row("Replay latency p50 / p99", f"{ms(replay.p(50))} / {ms(replay.p(99))}", "-", "-", None),
        Row(
            f"Fire lag of `{LAG_JOB}` (every 1s) p50, idle / under the trigger load "
            f"({len(lags.idle)} / {len(lags.load)} slots)",
            f"{fmt_lag(lags.idle, 50)} / {fmt_lag(lags.load, 50)}",
            "-",
            "-",
            None,
        ),
        Row(
            f"Fire lag p99, idle / under load (slots without a child: {lags.missing_idle} / {lags.missing_load})",
            f"{fmt_lag(lags.idle, 99)} / {fmt_lag(lags.load, 99)}",
            "-",
            f"under load <= idle p99 + {ms(LAG_ALLOWANCE)}; none missing",
            lags.passed,
        ),
        Row(
            f"RSS of the daemon after the load, API on (peak {ours.hwm_mb:.1f} MB)",
            f"{ours.rss_mb:.1f} MB",
            f"{rss_without_api:.1f} MB (same config, no --api)",
            f"<= {TARGET_RSS:.0f} MB",
            ours.rss_mb <= TARGET_RSS,
        ),
    ]


def spawn_rows(spawn: SpawnResult, seconds: float, drain_timeout: float) -> list[Row]:
    """The spawn-each model's rows: reported next to the main ones, without targets."""
    load, lags = spawn.load, spawn.lags
    if spawn.drained_after is None:
        drained = f"runs still queued or running {drain_timeout:.0f} s after it"
    else:
        drained = f"all {spawn.runs} done {spawn.drained_after:.1f} s after it"
    return [
        Row(
            f"spawn each: accepted triggers/s ({seconds:.0f} s, {load.concurrency} connections; `{API_JOB}` has "
            f"`concurrency: allow`, max_concurrent_runs {SPAWN_MAX_RUNS}: every accepted trigger is a fake child at "
            f"once; {spawn.launched_in_load} of {spawn.runs} runs launched within the window, {drained})",
            f"{load.rate:.0f}/s ({len(load.accepted)} of {len(load.samples)})",
            "-",
            "-",
            None,
        ),
        Row("spawn each: trigger latency p50 / p99", f"{ms(load.p(50))} / {ms(load.p(99))}", "-", "-", None),
        Row(
            "spawn each: server CPU per answered request in the window, ms",
            f"{load.cpu_ms():.1f} ms; by thread: {load.cpu_split()}",
            "-",
            "-",
            None,
        ),
        Row(
            f"spawn each: fire lag of `{LAG_JOB}` p50 / p99, idle / under load ({len(lags.idle)} / {len(lags.load)} "
            f"slots; without a child: {lags.missing_idle} / {lags.missing_load}; "
            f"{fmt_outcomes(spawn.tick_outcomes)} in the load window)",
            f"{fmt_lag(lags.idle, 50)} / {fmt_lag(lags.load, 50)}; {fmt_lag(lags.idle, 99)} / {fmt_lag(lags.load, 99)}",
            "-",
            "-",
            None,
        ),
    ]


def fmt_lag(values: Sequence[float], pct: float) -> str:
    return ms(percentile(list(values), pct)) if values else "none"


def fmt_outcomes(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items())) or "no slots"


def describe(result: LoadResult) -> str:
    return f"{result.concurrency} connections {result.rate:.0f}/s p50 {ms(result.p(50))} p99 {ms(result.p(99))}"


def backlog_note(ours: DaemonResult) -> str:
    return (
        f"runs (backlog model): right after the window `{API_JOB}` had {ours.backlog}; at the end, after the "
        f"replays: {ours.statuses}; `{LAG_JOB}`'s slots in the load window: {ours.tick_outcomes}. The long run "
        f"({SLEEP_S} s) is ended by the daemon's shutdown grace."
    )


# ---- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="short windows, no spawn-each rows and no sweep, for a CI smoke run"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="client connections [default: 8]")
    parser.add_argument("--profile", action="store_true", help="always profile the daemon under the load")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file for the table [default: bench/results-api.md; none with --quick]",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when any row FAILs")
    return parser.parse_args(argv)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    print(f"measuring {name} ...", flush=True)
    began = time.monotonic()
    yield
    print(f"  {name}: {time.monotonic() - began:.0f} s", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    install_cleanup()
    sizes, notes, load_before = (QUICK if args.quick else FULL), Notes(), load_average()
    conc = args.concurrency
    began = time.monotonic()
    with step("the HTTP floor"):
        floor = measure_floor([conc], sizes.floor_seconds)[0]
    with step("the daemon's API (backlog)"):
        ours = measure_daemon(sizes, conc, notes)
    with step("RSS without the API"):
        rss_without_api = measure_rss_without_api()
    rows = build_rows(floor, ours, rss_without_api, sizes)
    missed = any(r.passed is False for r in rows)  # the main rows only: spawn each has no targets
    notes.add(backlog_note(ours))
    if sizes.spawn_seconds:
        with step("the daemon's API (spawn each)"):
            spawn = measure_spawn_each(sizes.spawn_seconds, sizes.drain_timeout, conc, notes)
        rows += spawn_rows(spawn, sizes.spawn_seconds, sizes.drain_timeout)
    if sizes.sweep:
        with step("other concurrencies"):
            sweep = sorted({*sizes.sweep, conc})
            floors = measure_floor(sweep, SWEEP_SECONDS)
            daemons = sweep_daemon(sweep)
        notes.add(f"concurrency sweep, {SWEEP_SECONDS:.0f} s windows one after the other on one floor and one "
                  "daemon (backlog model: its queue grows from window to window):")  # fmt: skip
        notes.add("  floor: " + "; ".join(describe(r) for r in floors))
        notes.add("  daemon: " + "; ".join(f"{describe(r)} ({q} queued after it)" for r, q in daemons))
    library = f"FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}"
    head = header("api.py", args.quick, load_before, library)
    table = render(rows, "baseline (same run)")
    print(f"\nmeasured in {time.monotonic() - began:.0f} s\n\n{head}\n\n{table}\n", flush=True)
    if args.profile or (not args.quick and missed):
        with step("a profile of the daemon under the load"):
            profile_daemon(sizes.load_seconds, conc, notes)
            if args.profile and sizes.spawn_seconds:
                profile_daemon(sizes.spawn_seconds, conc, notes, spawn_each=True)
            trigger_in_process(notes, 2.0 if args.quick else 3.0)
    output = args.output or (None if args.quick else BENCH_DIR / "results-api.md")
    if output is not None:
        write_results(output, "HTTP API benchmark", head, table, notes)
        print(f"\nwritten to {output}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
