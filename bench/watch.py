"""How soon a watch job notices a landed file, and how fast the watcher starts on a big folder.

    /work/main/.venv/bin/python bench/watch.py [--quick] [--profile] [--output PATH] [--strict]

Run it with the project's virtualenv interpreter: it starts that environment's `zenml-scheduler`
and imports `scheduler` and `watchfiles` itself. A full run takes about 45 s on a 2-core machine
(writing the 101,000 files takes 15 s of it, more on a busy disk) and writes its table to
bench/results-watch.md; `--quick` shrinks every measurement for a CI smoke run (about 20 s) and
writes nothing unless --output is given.
`--profile` also profiles the in-process start-up scan (done anyway when it misses its target).
`--strict` exits 1 when a row FAILs.

1. Detection latency: files land in a watched folder one every 50 ms (per_file, settle 1s);
   for each, (its child's first statement) - (the writer closed it) - settle. Baseline: the
   same writes seen by a bare `watchfiles.watch` loop in a thread of this process (close -> event).
2. Start-up scan: 100,000 files already recorded in `watched_files` plus 1,000 new ones in one
   folder. In process: `load_known` + `FolderWatcher._scan(at_start=True)`, median of 3, against
   `os.listdir` and a set difference. End to end: `zenml-scheduler run` launched on that folder
   until every new file has a run row, minus settle; then the daemon's RSS.

Every daemon gets a fresh directory with its own schedules.yaml and state database, runs with
`--no-check-pipelines`, and ZENML_SCHEDULER_PYTHON points at a fake interpreter written here: as
`-m scheduler.child SPEC` it logs time.time() as its very first statement with the file it was
given, writes a succeeded result and exits. So the figures are the scheduler's own cost, not ZenML's.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import watchfiles
from firing import (
    Daemon,
    Notes,
    Row,
    header,
    install_cleanup,
    load_average,
    ms,
    percentile,
    pstats_text,
    render,
    rss_mb,
    write_results,
)
from firing import write_fake as firing_write_fake

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
JOB = "score"
CONTENT = b"id,value\n1,0.5\n2,0.25\n"

# Documented defaults of polling peers (not measured): a file waits on average half an interval.
PEERS = (
    ("Dagster sensor", "minimum_interval_seconds default 30 s", 30.0),
    ("Airflow FileSensor", "poke_interval default 60 s", 60.0),
    ("cron", "finest schedule 1 min", 60.0),
)

# -S skips site-packages: the fake needs only the stdlib, and the figure should be the
# scheduler's latency, not the time this virtualenv's .pth files take to import.
FAKE_INTERPRETER = """#!{python} -S
import time
T0 = time.time()  # first statement: the child is running from here on
import json
import os
import sys

ARGS = sys.argv[1:]
if ARGS[:2] != ["-m", "scheduler.child"]:
    sys.exit("fake interpreter: unexpected arguments %r" % (ARGS,))
with open(ARGS[2]) as handle:
    spec = json.load(handle)
given = spec.get("parameters", {{}}).get("input_path") or spec.get("run_key", "-")
log = os.environ.get("BENCH_SPAWN_LOG")
if log:
    with open(log, "a") as handle:
        handle.write("%.6f %s\\n" % (T0, os.path.basename(given)))
with open(spec["result_path"], "w") as handle:
    json.dump({{"status": "succeeded", "zenml_run_id": "x", "error": None}}, handle)
"""


# ---- sizes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    files: int  # latency: files written, one every `interval` seconds
    interval: float
    seen: int  # start-up scan: files already recorded as seen
    new: int  # start-up scan: files not recorded yet
    repeats: int


FULL = Sizes(files=200, interval=0.05, seen=100_000, new=1000, repeats=3)
QUICK = Sizes(files=40, interval=0.05, seen=10_000, new=200, repeats=3)
SETTLE_LATENCY = 1.0
SETTLE_START = 0.5


# ---- helpers --------------------------------------------------------------------------------
def write_fake(directory: Path) -> str:
    return firing_write_fake(directory, FAKE_INTERPRETER)


def write_config(root: Path, settle: str) -> Path:
    config = root / "schedules.yaml"
    config.write_text(
        "version: 1\njobs:\n"
        f"  {JOB}:\n"
        "    pipeline: fake.pipe:line\n"
        f'    watch: {{path: incoming, patterns: ["*.csv"], settle: {settle}}}\n'
        '    parameters: {input_path: "{path}"}\n'
    )
    (root / "incoming").mkdir(exist_ok=True)
    return config


def read_spawns(path: Path) -> dict[str, float]:
    """File name -> when its child's first statement ran (the first child, if several)."""
    spawns: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            stamp, _, name = line.partition(" ")
            spawns.setdefault(name, float(stamp))
    return spawns


def write_file(path: Path) -> float:
    """Write a small file in one go; return time.time() just after it was closed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, CONTENT)
    finally:
        os.close(fd)
    return time.time()


def utc_stamp(text: str) -> float:
    """A naive-UTC datetime column as stored by SQLite, as a Unix time."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def fake_startup(samples: int = 10) -> float:
    """Popen -> first statement of the fake child, with no scheduler involved."""
    with tempfile.TemporaryDirectory(prefix="bench-watch-fake-") as tmp:
        root = Path(tmp)
        fake, log, spec = write_fake(root), root / "spawns.log", root / "spec.json"
        spec.write_text(
            json.dumps({"parameters": {"input_path": "alone.csv"}, "result_path": str(root / "result.json")})
        )
        env = {**os.environ, "BENCH_SPAWN_LOG": str(log)}
        gaps = []
        for _ in range(samples):
            log.unlink(missing_ok=True)
            before = time.time()
            subprocess.run([fake, "-m", "scheduler.child", str(spec)], env=env, check=True)
            gaps.append(read_spawns(log)["alone.csv"] - before)
    return statistics.median(gaps)


# ---- the daemon -----------------------------------------------------------------------------
def watch_daemon(root: Path, config: Path) -> Daemon:
    """The daemon on `config`, children started with this bench's fake (no pipeline check)."""
    return Daemon(root, config, write_fake(root), max_runs=16, extra_args=("--no-check-pipelines",))


@contextlib.contextmanager
def running(daemon: Daemon) -> Iterator[Daemon]:
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


def watch_started(conn: sqlite3.Connection) -> bool:
    query = "SELECT count(*) FROM audit WHERE event = 'watch-started' AND job = ?"
    return bool(conn.execute(query, (JOB,)).fetchone()[0])


def poll(condition: Any, timeout: float, interval: float = 0.01) -> float | None:
    """time.time() when `condition()` first held, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.time()
        time.sleep(interval)
    return None


# ---- 1. detection latency -------------------------------------------------------------------
class BareWatch:
    """The inotify floor: a bare `watchfiles.watch` loop (debounce=50, step=10) in a thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: dict[str, list[float]] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bare-watch", daemon=True)

    def _run(self) -> None:
        for changes in watchfiles.watch(
            self.folder, watch_filter=None, debounce=50, step=10, stop_event=self.stop_event, raise_interrupt=False
        ):
            now = time.time()
            for _change, path in changes:
                self.seen.setdefault(os.path.basename(path), []).append(now)

    def start(self) -> None:
        """Start, and return once a probe file is seen (the inotify watch is in place)."""
        self.thread.start()
        probe = self.folder / "probe.tmp"  # ignored by the daemon: *.tmp, and not *.csv
        for _ in range(100):
            probe.write_bytes(b"probe")
            if poll(lambda: "probe.tmp" in self.seen, 0.1):
                probe.unlink()
                return
        raise RuntimeError("the bare watchfiles loop never saw its probe file")

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)

    def latency(self, name: str, closed: float) -> float | None:
        """Close -> the first batch of events for `name` delivered after the close."""
        times = self.seen.get(name)
        if not times:
            return None
        return min((t for t in times if t >= closed), default=max(times)) - closed


@dataclass
class Latencies:
    ours: list[float]  # child start - close - settle, per file run
    floor: list[float]  # close -> bare watchfiles event
    missing: int  # files without a child
    to_row: list[float]  # close -> run row created - settle (the watcher's part)
    row_to_child: list[float]  # run row created -> child start (the daemon's part)
    warmup: float  # the first file after start, beyond settle
    rss_mb: float  # the daemon, after its runs


def measure_latency(sizes: Sizes, notes: Notes) -> tuple[list[Row], float]:
    lat = detection_latencies(sizes)
    startup = fake_startup()
    n, ours = sizes.files, lat.ours
    notes.add(
        f"latency: {len(ours)} of {n} files ran ({lat.missing} missing); ours includes the fake child's "
        f"interpreter start, median {ms(startup)} alone; a warm-up file written before them "
        f"took {ms(lat.warmup)} beyond settle."
    )
    if lat.to_row:
        notes.add(
            f"latency split, medians: close -> run row committed - settle {ms(statistics.median(lat.to_row))} "
            f"(watcher + first transaction); run row -> child's first statement "
            f"{ms(statistics.median(lat.row_to_child))} (launch)."
        )
    worst = percentile(ours, 99) if ours and not lat.missing else float("inf")
    mean_total = statistics.mean(ours) + SETTLE_LATENCY if ours else float("inf")
    peers = "; ".join(f"{name} ({doc}): ~{interval / 2:.0f} s" for name, doc, interval in PEERS)
    rows = [
        Row(
            f"Detection latency beyond settle, p50 ({n} files, one every {sizes.interval * 1000:.0f} ms, "
            f"per_file, settle 1s; close -> child's first statement - settle)",
            ms(statistics.median(ours)) if ours else "none ran",
            f"{ms(statistics.median(lat.floor))} (bare watchfiles.watch, close -> event)",
            "-",
            None,
        ),
        Row(
            "Detection latency beyond settle, p99",
            ms(worst),
            ms(percentile(lat.floor, 99)),
            "<= 500 ms",
            worst <= 0.5,
        ),
        Row("Detection latency beyond settle, max", ms(max(ours, default=float("inf"))), ms(max(lat.floor)), "-", None),
        Row(
            "Mean close -> run start, settle included, vs polling peers' default intervals "
            "(documented, not measured: mean delay = interval / 2)",
            f"{mean_total:.2f} s",
            peers,
            "-",
            None,
        ),
    ]
    return rows, lat.rss_mb


def detection_latencies(sizes: Sizes) -> Latencies:
    with tempfile.TemporaryDirectory(prefix="bench-watch-latency-") as tmp:
        root = Path(tmp)
        folder = root / "incoming"
        daemon = watch_daemon(root, write_config(root, "1s"))
        with running(daemon):
            daemon.wait_ready(60)
            conn = daemon.connect()
            try:
                if poll(lambda: watch_started(conn), 30) is None:
                    raise RuntimeError(f"the watcher never started:\n{daemon.log_tail()}")
                time.sleep(0.5)  # the inotify watch is set after the start scan, a moment after watch-started
                warmup_closed = write_file(folder / "warmup.csv")
                if poll(lambda: "warmup.csv" in read_spawns(daemon.spawn_log), 30, 0.05) is None:
                    raise RuntimeError(f"the warm-up file never ran:\n{daemon.log_tail()}")
                bare = BareWatch(folder)
                bare.start()
                try:
                    closed = write_spread(folder, sizes.files, sizes.interval)
                    budget = sizes.files * sizes.interval + SETTLE_LATENCY + 30
                    poll(lambda: len(read_spawns(daemon.spawn_log)) > sizes.files, budget, 0.1)
                    time.sleep(0.3)  # a late child may still be writing its line
                finally:
                    bare.stop()
                rss = rss_mb(daemon.pid)
                created = run_rows_created(conn)
            finally:
                conn.close()
        spawns = read_spawns(daemon.spawn_log)
    ours, to_row, row_to_child = [], [], []
    for name, when in closed.items():
        if name in spawns:
            ours.append(spawns[name] - when - SETTLE_LATENCY)
        if name in spawns and name in created:
            to_row.append(created[name] - when - SETTLE_LATENCY)
            row_to_child.append(spawns[name] - created[name])
    floor = [gap for gap in (bare.latency(name, when) for name, when in closed.items()) if gap is not None]
    missing = sum(name not in spawns for name in closed)
    warmup = spawns["warmup.csv"] - warmup_closed - SETTLE_LATENCY
    return Latencies(ours, floor, missing, to_row, row_to_child, warmup, rss)


def write_spread(folder: Path, n: int, interval: float) -> dict[str, float]:
    """Write `n` files one every `interval` seconds; file name -> when it was closed."""
    closed = {}
    began = time.monotonic()
    for index in range(n):
        time.sleep(max(0.0, began + index * interval - time.monotonic()))
        name = f"part-{index:05d}.csv"
        closed[name] = write_file(folder / name)
    return closed


def run_rows_created(conn: sqlite3.Connection) -> dict[str, float]:
    """File name -> when its run row was created (the daemon's tick time), from the run key."""
    created = {}
    for run_key, created_at in conn.execute("SELECT run_key, created_at FROM runs WHERE attempt = 1"):
        name = run_key.partition("@file:")[2].rpartition("#")[0]
        created[name] = utc_stamp(created_at)
    return created


# ---- 2. start-up scan -----------------------------------------------------------------------
@dataclass
class Folder:
    root: Path
    config: Path
    seen: set[str]
    new: set[str]


def build_folder(root: Path, sizes: Sizes) -> Folder:
    """`seen` + `new` small files in one folder, the seen ones recorded in a fresh state database."""
    sys.path.insert(0, str(REPO))
    from scheduler.store.engine import open_store
    from scheduler.store.schema import watched_files

    config = write_config(root, f"{SETTLE_START * 1000:.0f}ms")
    folder = root / "incoming"
    seen = {f"seen-{index:06d}.csv" for index in range(sizes.seen)}
    new = {f"new-{index:05d}.csv" for index in range(sizes.new)}
    for name in sorted(seen | new):
        write_file(folder / name)
    now = datetime.now(timezone.utc)
    rows = []
    for name in sorted(seen):
        st = os.stat(folder / name)
        rows.append({
            "job": JOB, "path": name, "version": "", "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "run_key": f"{JOB}@file:{name}#seen", "status": "dispatched", "seen_at": now,
        })  # fmt: skip
    store = open_store(f"sqlite:///{root / 'state' / 'state.db'}")
    try:
        with store.write() as conn:
            conn.execute(watched_files.insert(), rows)
    finally:
        store.close()
    return Folder(root, config, seen, new)


@dataclass
class ScanResult:
    load: float  # load_known, seconds
    scan: float  # _scan(at_start=True), seconds
    pending: set[str]
    emitted: int

    @property
    def total(self) -> float:
        return self.load + self.scan


def startup_work(folder: Folder, profiler: cProfile.Profile | None = None) -> ScanResult:
    """What a watcher thread does before its event loop: load what was seen, scan the folder."""
    from scheduler.config.loader import load_config
    from scheduler.store.engine import open_store
    from scheduler.watch.folder_watcher import FolderWatcher
    from scheduler.watch.seen_files import Known, load_known

    job = load_config(folder.config).jobs[JOB]
    store = open_store(f"sqlite:///{folder.root / 'state' / 'state.db'}")
    emitted: list[Any] = []

    def loader(details: bool) -> dict[str, Known | None]:
        with store.read() as conn:
            return load_known(conn, JOB, details)

    try:
        watcher = FolderWatcher(job, loader, emitted.append)
        if profiler is not None:
            profiler.enable()
        began = time.perf_counter()
        watcher.known = watcher._load_known(watcher.retrigger)
        loaded = time.perf_counter()
        watcher._scan(watcher._now(), at_start=True)
        scanned = time.perf_counter()
        if profiler is not None:
            profiler.disable()
    finally:
        store.close()
    return ScanResult(loaded - began, scanned - loaded, set(watcher.tracker.pending), len(emitted))


def listdir_floor(folder: Folder) -> tuple[float, int]:
    """os.listdir + a set difference against the seen names, loaded beforehand: the floor."""
    path, seen = folder.root / "incoming", set(folder.seen)
    began = time.perf_counter()
    new = set(os.listdir(path)) - seen
    return time.perf_counter() - began, len(new)


def measure_scan(sizes: Sizes, notes: Notes, profile: bool, rss_small: float) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-watch-scan-") as tmp:
        began = time.monotonic()
        folder = build_folder(Path(tmp), sizes)
        notes.add(
            f"scan: {sizes.seen + sizes.new} files written and {sizes.seen} recorded as seen in "
            f"{time.monotonic() - began:.1f} s (setup, not measured)."
        )
        results = [startup_work(folder) for _ in range(sizes.repeats)]
        floors = [listdir_floor(folder) for _ in range(sizes.repeats)]
        ours = statistics.median(r.total for r in results)
        exact = all(r.pending == folder.new and r.emitted == 0 for r in results)
        notes.add(
            "scan, per repeat (load_known + _scan): "
            + "; ".join(f"{r.load:.2f} + {r.scan:.2f} s" for r in results)
            + f"; the folder stays in the page cache, so repeats are warm. A periodic safety scan "
            f"(scan_interval, default 60 s) costs about the _scan part again each time, "
            f"~{100 * statistics.median(r.scan for r in results) / 60:.1f} % of a core."
        )
        if profile or ours > 2.0:
            profiler = cProfile.Profile()
            startup_work(folder, profiler)
            with tempfile.NamedTemporaryFile(suffix=".prof") as out:
                profiler.dump_stats(out.name)
                notes.add(f"profile of load_known + _scan with {sizes.seen} seen + {sizes.new} new files:")
                notes.add(pstats_text(Path(out.name), "scheduler|sqlalchemy", top=15))
        e2e = end_to_end(folder, notes)
    floor = statistics.median(f for f, _ in floors)
    n = sizes.seen + sizes.new
    pending = [len(r.pending & folder.new) for r in results]
    return [
        Row(
            f"Start-up scan: {sizes.seen} seen + {sizes.new} new files in one folder, load_known + "
            f"FolderWatcher._scan(at_start=True) in process (median of {len(results)})",
            f"{ours:.2f} s ({', '.join(f'{r.total:.2f}' for r in results)})",
            f"{floor * 1000:.0f} ms (os.listdir + set difference, names pre-loaded)",
            "<= 2 s",
            ours <= 2.0,
        ),
        Row(
            "Start-up scan: files left pending in the settle tracker",
            f"{min(pending)} new of {sizes.new}, {max(len(r.pending) for r in results)} in all",
            f"{floors[0][1]} (set difference)",
            f"exactly the {sizes.new} new",
            exact,
        ),
        Row(
            f"End to end: launch `zenml-scheduler run` -> all {sizes.new} new files have a run row, "
            f"minus settle {SETTLE_START * 1000:.0f}ms",
            f"{e2e.all_rows:.2f} s (table {e2e.ready:.2f} s, watch-started {e2e.started:.2f} s, "
            f"first row {e2e.first_row:.2f} s)"
            if e2e.all_rows is not None
            else "never",
            "-",
            "-",
            None,
        ),
        Row(
            f"End to end: runs for the {sizes.seen} already-seen files",
            f"{e2e.seen_runs} ({e2e.runs} runs in all; {e2e.modified_notices} file-modified-ignored)",
            "-",
            f"0 ({sizes.new} runs in all)",
            e2e.seen_runs == 0 and e2e.runs == sizes.new and e2e.all_rows is not None,
        ),
        Row(
            f"RSS of the daemon watching the {n}-file folder (after dispatching)",
            f"{e2e.rss_mb:.1f} MB",
            f"{rss_small:.1f} MB (the latency daemon, {sizes.files + 1}-file folder)",
            "-",
            None,
        ),
    ]


@dataclass
class EndToEnd:
    ready: float
    started: float
    first_row: float
    all_rows: float | None  # launch -> every new file has a run row, minus settle
    runs: int
    seen_runs: int
    modified_notices: int
    rss_mb: float


def end_to_end(folder: Folder, notes: Notes) -> EndToEnd:
    n = len(folder.new)
    daemon = watch_daemon(folder.root, folder.config)
    with running(daemon):
        daemon.wait_ready(120)
        conn = daemon.connect()
        try:
            started = poll(lambda: watch_started(conn), 60)
            first = poll(lambda: conn.execute("SELECT count(*) FROM runs").fetchone()[0] > 0, 60)
            done = poll(lambda: conn.execute("SELECT count(*) FROM runs").fetchone()[0] >= n, 60)
            time.sleep(1.0)  # anything more than the new files would show up by now
            runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
            seen_runs = conn.execute("SELECT count(*) FROM runs WHERE run_key LIKE ?", (f"{JOB}@file:seen-%",))
            seen = seen_runs.fetchone()[0]
            notices = conn.execute("SELECT count(*) FROM audit WHERE event = 'file-modified-ignored'").fetchone()[0]
            rss = rss_mb(daemon.pid)
        finally:
            conn.close()
    assert daemon.ready_at is not None
    if done is None:
        notes.add(f"end to end: only {runs} of {n} run rows after 60 s:\n{daemon.log_tail()}")
    launched = daemon.launched
    return EndToEnd(
        ready=daemon.ready_at - launched,
        started=(started or float("nan")) - launched,
        first_row=(first or float("nan")) - launched,
        all_rows=None if done is None else done - launched - SETTLE_START,
        runs=runs,
        seen_runs=seen,
        modified_notices=notices,
        rss_mb=rss,
    )


# ---- output ---------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a CI smoke run")
    parser.add_argument("--profile", action="store_true", help="always profile the in-process start-up scan")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file for the table [default: bench/results-watch.md; none with --quick]",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when any row FAILs")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    install_cleanup()
    sizes, notes, load_before = (QUICK if args.quick else FULL), Notes(), load_average()
    rows: list[Row] = []
    began = time.monotonic()
    print("measuring detection latency ...", flush=True)
    latency_rows, rss_small = measure_latency(sizes, notes)
    rows += latency_rows
    print(f"  detection latency: {time.monotonic() - began:.0f} s", flush=True)
    began = time.monotonic()
    print("measuring start-up scan ...", flush=True)
    rows += measure_scan(sizes, notes, args.profile, rss_small)
    print(f"  start-up scan: {time.monotonic() - began:.0f} s", flush=True)
    head = header("watch.py", args.quick, load_before, f"watchfiles {watchfiles.__version__}")
    table = render(rows, "baseline (same run)")
    print(f"\n{head}\n\n{table}")
    output = args.output or (None if args.quick else BENCH_DIR / "results-watch.md")
    if output is not None:
        write_results(output, "File-watch benchmark", head, table, notes)
        print(f"\nwritten to {output}")
    return 1 if args.strict and any(r.passed is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
