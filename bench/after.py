"""How soon an `after: pipeline:` trigger fires for a ZenML run started outside the daemon.

    /work/main/.venv/bin/python bench/after.py [--runs N] [--output PATH] [--strict]

Run it with the project's virtualenv interpreter. A fresh project (the test pipelines of
tests/fixtures/tinypipes, a fresh ZENML_CONFIG_PATH) gets a daemon whose one job runs after every
run of `followed_pipeline`. One outside process then runs that pipeline N times (default 20), as a
person or CI would, half a second apart. For each upstream run: the latency from ZenML's end
time of the run to the downstream run row (`runs.created_at`: the time of the loop pass that
wrote it, committed a few milliseconds later); most of it is the follower's poll interval.
Baseline, in the same run: a bare poller beside the follower, a process that asks ZenML for
ended runs every 0.1 s (`list_pipeline_runs`, as the follower does every second), which is the
floor for anything that learns of ZenML runs by asking ZenML. Peers' documented default
intervals are listed for reference (not measured). Also: the follower's and the daemon's memory
(RSS, from /proc) and CPU over the measurement.

The daemon's own runs are started with a fake interpreter (they succeed at once): the figures
are the trigger's cost, not ZenML's. Writes its table to bench/results-after.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from firing import (
    Notes,
    Row,
    cpu_seconds,
    header,
    install_cleanup,
    load_average,
    ms,
    percentile,
    render,
    rss_mb,
    spawn,
    stop,
    write_results,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
ZENML_SCHEDULER = str(Path(PYTHON).parent / "zenml-scheduler")
TARGET_P95_S = 2.0
IDLE_S = 10.0
PEERS = (
    ("Dagster run-status sensor", "minimum_interval_seconds default 30 s", 30.0),
    ("Airflow ExternalTaskSensor", "poke_interval default 60 s", 60.0),
)

FAKE = """#!{python}
import json, os, sys
if sys.argv[2] == "scheduler.child.follower":  # the real follower
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])
if sys.argv[2] != "scheduler.child":
    sys.exit(0)
spec = json.load(open(sys.argv[3]))
with open(spec["result_path"], "w") as handle:
    json.dump({{"status": "succeeded", "zenml_run_id": "x", "error": None}}, handle)
"""

SCHEDULES = """\
version: 1
jobs:
  downstream:
    pipeline: fakepipes.fake:downstream
    after: {pipeline: followed_pipeline, when: "metadata.score >= 0.0"}
    concurrency: allow
    parameters: {score: "{upstream.metadata.score}"}
"""

OUTSIDE = """\
import sys, time
from tinypipes.followed import followed_pipeline
for n in range(int(sys.argv[1])):
    followed_pipeline(score=n / 100)
    time.sleep(0.5)
"""

POLLER = """\
import json, sys, time
from datetime import datetime, timezone
from zenml.client import Client
client = Client()
since = datetime.now(timezone.utc).replace(tzinfo=None)
seen = set()
print("ready", flush=True)
while True:
    page = client.list_pipeline_runs(end_time=f"gte:{since:%Y-%m-%d %H:%M:%S}", size=50, sort_by="asc:end_time")
    for run in page.items:
        if str(run.id) not in seen and run.status.is_finished:
            seen.add(str(run.id))
            print(json.dumps({"id": str(run.id), "seen": time.time()}), flush=True)
    time.sleep(0.1)
"""


def zenml_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "ZENML_SCHEDULER_"))}
    env.update(
        ZENML_CONFIG_PATH=str(root / "zenml-config"), ZENML_ANALYTICS_OPT_IN="false",
        ZENML_LOGGING_VERBOSITY="WARN", ZENML_LOGGING_COLORS_DISABLED="true", ZENML_ENABLE_RICH_TRACEBACK="false",
        PYTHONPATH=os.pathsep.join([str(root), str(REPO)]),
    )  # fmt: skip
    return env


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results-after.md")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a row FAILs")
    args = parser.parse_args(argv)
    install_cleanup()
    load_before = load_average()
    notes = Notes()
    with tempfile.TemporaryDirectory(prefix="bench-after-") as tmp:
        rows = measure(Path(tmp), args.runs, notes)
    table = render(rows, baseline="bare ZenML poller (0.1 s)")
    print(table)
    head = header("after.py", False, load_before, f"{args.runs} upstream runs")
    write_results(args.output, "after: trigger latency", head, table, notes)
    return 1 if args.strict and any(r.passed is False for r in rows) else 0


def measure(root: Path, runs: int, notes: Notes) -> list[Row]:
    shutil.copytree(REPO / "tests" / "fixtures" / "tinypipes", root / "tinypipes",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (root / "schedules.yaml").write_text(SCHEDULES)
    (root / "outside.py").write_text(OUTSIDE)
    (root / "poller.py").write_text(POLLER)
    fake = root / "fake-python"
    fake.write_text(FAKE.format(python=PYTHON))
    fake.chmod(0o755)
    env = zenml_env(root)
    init = "from zenml.client import Client; c = Client(); c.active_project; c.active_stack_model"
    subprocess.run([PYTHON, "-c", init], cwd=root, env=env, check=True, capture_output=True, timeout=300)

    daemon_env = {**env, "ZENML_SCHEDULER_PYTHON": str(fake), "ZENML_SCHEDULER_STATE_DIR": str(root / "state")}
    log = open(root / "daemon.log", "w")  # noqa: SIM115  (handed to the child)
    daemon = spawn([ZENML_SCHEDULER, "run", "--config", str(root / "schedules.yaml"), "--no-check-pipelines",
                    "--log-format", "json"], cwd=root, env=daemon_env, stdout=log, stderr=log)  # fmt: skip
    db = root / "state" / "state.db"
    follower = wait_for_follower(db, 120)
    poller = spawn([PYTHON, "poller.py"], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    assert poller.stdout is not None and poller.stdout.readline().strip() == "ready"
    time.sleep(1.0)

    idle0 = {"daemon": cpu_seconds(daemon.pid), "follower": cpu_seconds(follower)}
    time.sleep(IDLE_S)
    idle = {name: (cpu_seconds(pid) - idle0[name]) / IDLE_S * 100 for name, pid in
            (("daemon", daemon.pid), ("follower", follower))}  # fmt: skip
    cpu0 = {"daemon": cpu_seconds(daemon.pid), "follower": cpu_seconds(follower)}
    started = time.monotonic()
    outside = subprocess.run([PYTHON, "outside.py", str(runs)], cwd=root, env=env, capture_output=True, text=True,
                             timeout=60 + 20 * runs, check=False)  # fmt: skip
    if outside.returncode != 0:
        raise RuntimeError(outside.stderr[-2000:])
    deadline = time.monotonic() + 30
    while len(fired(db)) < runs and time.monotonic() < deadline:
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    cpu = {name: (cpu_seconds(pid) - cpu0[name]) / elapsed * 100 for name, pid in
           (("daemon", daemon.pid), ("follower", follower))}  # fmt: skip
    rss = {"daemon": rss_mb(daemon.pid), "follower": rss_mb(follower)}
    seen = poller_seen(poller)
    stop(daemon)
    log.close()

    upstream = upstream_runs(db)
    downstream = fired(db)
    latency, floor = [], []
    for run_id, ended in upstream.items():
        if run_id not in downstream:
            notes.add(f"upstream run {run_id} fired nothing")
            continue
        latency.append(downstream[run_id] - ended)
        if run_id in seen:
            floor.append(seen[run_id] - ended)
    notes.add(f"{len(latency)} of {runs} upstream runs fired their downstream run ({len(downstream)} rows)")
    p95 = percentile(latency, 95)
    return [
        Row(f"ZenML end -> downstream run row committed, p50 ({len(latency)} runs)", ms(percentile(latency, 50)),
            ms(percentile(floor, 50)), "-", None),
        Row("ZenML end -> downstream run row committed, p95", ms(p95), ms(percentile(floor, 95)),
            f"<= {TARGET_P95_S:.0f} s", p95 <= TARGET_P95_S),
        Row("follower RSS", f"{rss['follower']:.1f} MB", "-", "-", None),
        Row(f"follower CPU idle ({IDLE_S:.0f} s, nothing ends; 1 s interval)", f"{idle['follower']:.1f} %", "-", "-",
            None),
        Row(f"daemon CPU idle ({IDLE_S:.0f} s)", f"{idle['daemon']:.1f} %", "-", "-", None),
        Row("follower CPU while runs end (1 s interval)", f"{cpu['follower']:.1f} %", "-", "-", None),
        Row("daemon RSS", f"{rss['daemon']:.1f} MB", "-", "<= 100 MB", rss["daemon"] <= 100),
        Row("daemon CPU while runs end", f"{cpu['daemon']:.1f} %", "-", "-", None),
        *[Row(f"{name} ({what}), mean delay implied", "-", f"{interval / 2:.0f} s", "-", None)
          for name, what, interval in PEERS],
    ]  # fmt: skip


def wait_for_follower(db: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = query(db, "SELECT value FROM meta WHERE key='follower_state'")
        if state and json.loads(state[0][0]).get("state") == "running":
            return int(json.loads(state[0][0])["pid"])
        time.sleep(0.2)
    raise RuntimeError("the follower did not start")


def query(db: Path, sql: str) -> list[Any]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def _utc(value: str) -> float:
    """A time as the state database stores it (naive UTC) as a Unix timestamp."""
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc).timestamp()


def upstream_runs(db: Path) -> dict[str, float]:
    """{ZenML run id: its ZenML end time}."""
    found = query(db, "SELECT zenml_run_id, finished_at FROM upstream_runs WHERE origin='zenml'")
    return {run_id: _utc(ended) for run_id, ended in found}


def fired(db: Path) -> dict[str, float]:
    """{upstream ZenML run id: when its downstream run row was committed}."""
    return {up: _utc(created) for up, created in query(db, "SELECT upstream, created_at FROM runs")}


def poller_seen(poller: subprocess.Popen[str]) -> dict[str, float]:
    stop(poller)
    assert poller.stdout is not None
    seen = {}
    for line in poller.stdout.read().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            seen[entry["id"]] = entry["seen"]
    return seen


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
