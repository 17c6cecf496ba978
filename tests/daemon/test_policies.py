"""Firing policies against the daemon as a real subprocess, with a stand-in child interpreter
(tests/harness.py) so that runs succeed, fail, hang or outlive their timeout on purpose and fast."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest

from scheduler.policy.keys import slot_run_key
from tests.harness import DaemonProcess, Project, wait_for
from tests.runs.test_runner import group_members

pytestmark = pytest.mark.slow


def start(project: Project, env: dict[str, str], **extra: str) -> DaemonProcess:
    daemon = project.start_daemon("--no-check-pipelines", env={**env, **extra})
    wait_for(lambda: "JOB" in daemon.out_path.read_text() or daemon.process.poll() is not None, 60, "daemon start")
    assert daemon.process.poll() is None, daemon.output
    return daemon


def ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc) if value else None


def runs_of(project: Project, job: str) -> list[sqlite3.Row]:
    return project.query("SELECT * FROM runs WHERE job=? ORDER BY id", job)


def audit_of(project: Project, job: str, event: str) -> list[dict]:
    rows = project.query("SELECT details FROM audit WHERE job=? AND event=? ORDER BY id", job, event)
    return [json.loads(r["details"]) for r in rows]


def max_overlap(runs: list[sqlite3.Row]) -> int:
    """Most runs of one job that were running at the same moment."""
    edges = []
    for run in runs:
        if run["started_at"]:
            edges += [
                (ts(run["started_at"]), 1),
                (ts(run["finished_at"]) or datetime.max.replace(tzinfo=timezone.utc), -1),
            ]
    level = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak


CONCURRENCY = """\
version: 1
defaults:
  pipeline: fake.pipe:line
  every: 2s
  parameters: {mode: sleep, seconds: 5}
jobs:
  skip: {concurrency: skip}
  queue: {concurrency: queue, max_queued: 1}
  replace: {concurrency: replace}
  allow: {concurrency: allow, max_active: 2}
"""


def test_concurrency_skip_queue_replace_allow(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(CONCURRENCY)
    daemon = start(project, stand_in)
    wait_for(
        lambda: len([r for r in runs_of(project, "queue") if r["status"] == "succeeded"]) >= 2, 60, "two queued runs"
    )
    assert daemon.stop() == 0

    skip = runs_of(project, "skip")
    assert max_overlap(skip) == 1
    assert any(r["status"] == "skipped" and r["reason"].startswith("concurrency:") for r in skip)

    queue = runs_of(project, "queue")
    assert max_overlap(queue) == 1  # one after another...
    done = [r for r in queue if r["status"] == "succeeded"]
    assert ts(done[1]["started_at"]) >= ts(done[0]["finished_at"])  # ...the second waited for the first
    assert any(r["status"] == "skipped" and r["reason"].startswith("queue-full:") for r in queue)

    replace = runs_of(project, "replace")
    replaced = [r for r in replace if r["status"] == "cancelled" and "replaced" in (r["error"] or "")]
    assert replaced, [dict(r) for r in replace]
    assert max_overlap(replace) == 1
    assert audit_of(project, "replace", "fire")[-1].get("replaces")

    allow = runs_of(project, "allow")
    assert max_overlap(allow) == 2  # overlapping, but never past max_active
    assert any(r["status"] == "skipped" and "max_active 2" in r["reason"] for r in allow)


def test_timeout_kills_the_whole_process_tree(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(
        "version: 1\njobs:\n  hang:\n    pipeline: fake.pipe:line\n    cron: '0 0 1 1 *'\n"
        "    timeout: 2s\n    parameters: {mode: ignore-term}\n"
    )
    daemon = start(project, stand_in)
    assert project.cli("trigger", "hang").returncode == 0
    run = wait_for(lambda: project.query("SELECT * FROM runs WHERE status='timed_out'"), 30, "the timeout")[0]
    assert run["error"] == "timed out after 2s"
    assert group_members(run["pid"]) == []  # the child ignored SIGTERM; SIGKILL took it and its grandchild
    assert (ts(run["finished_at"]) - ts(run["started_at"])).total_seconds() < 10
    wait_for(lambda: audit_of(project, "hang", "zenml-run-reconciled"), 30, "the ZenML-side repair")
    assert daemon.stop() == 0
    assert audit_of(project, "hang", "run-timed_out")[0]["error"] == "timed out after 2s"


def test_retries_back_off_and_each_attempt_is_a_row(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(
        "version: 1\njobs:\n  flaky:\n    pipeline: fake.pipe:line\n    cron: '0 0 1 1 *'\n"
        "    retries: {max: 2, backoff: 2s, factor: 2}\n    parameters: {mode: fail}\n"
    )
    daemon = start(project, stand_in)
    result = project.cli("trigger", "flaky", "--wait", "--json")
    assert result.returncode == 1  # the last attempt failed
    assert daemon.stop() == 0
    attempts = runs_of(project, "flaky")
    assert [(r["attempt"], r["status"]) for r in attempts] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert len({r["run_key"] for r in attempts}) == 1  # all under the same slot
    gaps = [(ts(b["started_at"]) - ts(a["finished_at"])).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert 2 <= gaps[0] < 4 and 4 <= gaps[1] < 6, gaps
    assert [e["delay_s"] for e in audit_of(project, "flaky", "retry-scheduled")] == [2.0, 4.0]
    status = json.loads(project.cli("status", "flaky", "--json").stdout)
    assert status["consecutive_failures"] == 1 and status["error_count"] == 3  # one slot failed, three attempts
    assert status["last_dispatch"] == "error" and status["last_error"] == "asked to fail"


def test_pause_after_failures_then_resume_and_clear(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(
        "version: 1\njobs:\n  broken:\n    pipeline: fake.pipe:line\n    every: 1s\n"
        "    pause_after_failures: 2\n    catchup: none\n    parameters: {mode: fail}\n"
    )
    daemon = start(project, stand_in)
    wait_for(lambda: audit_of(project, "broken", "auto-pause"), 30, "the job to pause itself")
    time.sleep(2)
    failed = [r for r in runs_of(project, "broken") if r["status"] == "failed"]
    assert len(failed) == 2  # nothing ran after the pause
    status = json.loads(project.cli("status", "broken", "--json").stdout)
    assert status["paused"] and "2 consecutive failed slots" in status["paused_reason"]
    assert status["consecutive_failures"] == 2 and status["first_error_at"] and status["last_error_at"]
    cleared = project.cli("clear-errors", "broken")
    assert cleared.returncode == 0
    status = json.loads(project.cli("status", "broken", "--json").stdout)
    assert status["consecutive_failures"] == 0 and status["error_count"] == 0 and status["paused"]
    assert project.cli("resume", "broken").returncode == 0
    wait_for(lambda: len([r for r in runs_of(project, "broken") if r["status"] == "failed"]) > 2, 30, "runs again")
    assert daemon.stop() == 0
    events = [r["event"] for r in project.query("SELECT event FROM audit WHERE job='broken'")]
    assert "clear-errors" in events and "resume" in events


def test_max_runs_counts_across_restarts(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(
        "version: 1\njobs:\n  twice:\n    pipeline: fake.pipe:line\n    every: 1s\n    max_runs: 2\n    catchup: none\n"
    )
    daemon = start(project, stand_in)
    wait_for(lambda: len([r for r in runs_of(project, "twice") if r["status"] == "succeeded"]) == 2, 30, "two runs")
    time.sleep(2)
    assert daemon.stop() == 0
    daemon = start(project, stand_in)
    time.sleep(3)
    assert daemon.stop() == 0
    launched = [r for r in runs_of(project, "twice") if r["status"] != "skipped"]
    assert len(launched) == 2
    status = json.loads(project.cli("status", "twice", "--json").stdout)
    assert status["launched"] == 2 and status["last_dispatch"] in ("success", "skipped-max-runs")


def test_lost_run_after_kill9_is_retried_never_duplicated(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(
        "version: 1\njobs:\n  long:\n    pipeline: fake.pipe:line\n    cron: '0 0 1 1 *'\n"
        "    retries: {max: 1, backoff: 1s}\n"
        f"    parameters: {{mode: sleep, seconds: 6, markers: {project.root / 'm'}}}\n"
    )
    first = start(project, stand_in)
    assert project.cli("trigger", "long").returncode == 0
    run = wait_for(
        lambda: project.query("SELECT * FROM runs WHERE status='running' AND pid IS NOT NULL"), 30, "running"
    )[0]
    wait_for(lambda: (project.root / "m").exists() and any((project.root / "m").iterdir()), 30, "the run to start")
    first.kill9()
    os.killpg(run["pid"], signal.SIGKILL)  # the run dies with the daemon: nothing reports its end
    second = start(project, stand_in)
    wait_for(lambda: project.query("SELECT 1 FROM runs WHERE attempt=2 AND status='succeeded'"), 60, "the retry")
    assert second.stop() == 0
    attempts = [(r["attempt"], r["status"]) for r in runs_of(project, "long")]
    assert attempts == [(1, "lost"), (2, "succeeded")]
    assert len(list((project.root / "m").iterdir())) == 2  # two launches: the lost one and its retry
    assert audit_of(project, "long", "zenml-run-reconciled")  # the lost run's ZenML side was looked after


OUTAGE = """\
version: 1
defaults:
  pipeline: fake.pipe:line
  every: 30m
  misfire_grace: 7h
jobs:
  none: {catchup: none}
  latest: {catchup: latest}
  all: {catchup: all, max_catchup: 5}
  short-grace: {catchup: latest, misfire_grace: 1h}
"""


def test_six_hour_outage_for_each_catchup_mode(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(OUTAGE)
    assert start(project, stand_in).stop() == 0
    # Pretend the daemon has been down for six hours: move every job's slot watermark back.
    now = datetime.now(timezone.utc)
    down_since = now - timedelta(hours=6)
    conn = sqlite3.connect(project.db_path)
    conn.execute("UPDATE jobs SET last_slot=?", (down_since.replace(tzinfo=None).isoformat(sep=" "),))
    conn.commit()
    conn.close()
    daemon = start(project, stand_in)
    wait_for(lambda: len([r for r in runs_of(project, "all") if r["status"] == "succeeded"]) == 5, 60, "catch-up")
    assert daemon.stop() == 0

    minutes = int((now - down_since).total_seconds() // 60)
    missed = [down_since + timedelta(minutes=m) for m in range(1, minutes + 1)]
    missed = [
        t.replace(second=0, microsecond=0) for t in missed if t.minute in (0, 30) and t.second == down_since.second
    ]
    missed = sorted({slot for slot in missed if down_since < slot <= now})
    assert len(missed) in (12, 13)

    def caught(job: str) -> list[str]:
        return [r["run_key"] for r in runs_of(project, job) if r["trigger"] == "catchup"]

    def skipped(job: str, code: str) -> list[str]:
        return [e["scheduled_for"] for e in audit_of(project, job, "skip") if e.get("code") == code]

    assert caught("none") == [] and len(skipped("none", "catchup-none")) == len(missed)
    assert caught("latest") == [slot_run_key("latest", missed[-1])]
    assert len(skipped("latest", "coalesced")) == len(missed) - 1
    assert caught("all") == [slot_run_key("all", slot) for slot in missed[-5:]]  # the newest five, oldest first
    assert len(skipped("all", "catchup-limit")) == len(missed) - 5
    all_runs = [r for r in runs_of(project, "all") if r["trigger"] == "catchup"]
    assert max_overlap(all_runs) == 1  # run one after another
    # past its 1 h grace window, only counted; the newest inside it fires
    expired = [e for e in audit_of(project, "short-grace", "skip") if e.get("code") == "missed"]
    assert expired and expired[0]["count"] == len([s for s in missed if s <= now - timedelta(hours=1)])
    assert caught("short-grace") == [slot_run_key("short-grace", missed[-1])]


def test_jitter_delays_each_slot_stably(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config("version: 1\njobs:\n  spread: {pipeline: fake.pipe:line, every: 2s, jitter: 1.5s}\n")
    result = project.cli("validate", "--no-pipelines")
    assert result.returncode == 2 and "jitter" in result.stderr  # whole units: 1s500ms, not 1.5s
    project.write_config("version: 1\njobs:\n  spread: {pipeline: fake.pipe:line, every: 3s, jitter: 2s}\n")
    daemon = start(project, stand_in)
    wait_for(lambda: len([r for r in runs_of(project, "spread") if r["status"] == "succeeded"]) >= 3, 30, "runs")
    assert daemon.stop() == 0
    for run in [r for r in runs_of(project, "spread") if r["status"] == "succeeded"]:
        delay = (ts(run["not_before"]) - ts(run["scheduled_for"])).total_seconds()
        assert 0 <= delay < 2
        assert ts(run["started_at"]) >= ts(run["not_before"])


def test_a_run_cut_short_by_shutdown_is_retried_at_the_next_start(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(
        "version: 1\njobs:\n  long:\n    pipeline: fake.pipe:line\n    cron: '0 0 1 1 *'\n"
        "    retries: {max: 1, backoff: 1s}\n    parameters: {mode: sleep, seconds: 4}\n"
    )
    first = start(project, stand_in)
    assert project.cli("trigger", "long").returncode == 0
    wait_for(lambda: project.query("SELECT 1 FROM runs WHERE status='running' AND pid IS NOT NULL"), 30, "a run")
    assert first.stop() == 0  # shutdown_grace 1s: the run is stopped and cancelled
    assert [(r["attempt"], r["status"]) for r in runs_of(project, "long")] == [(1, "cancelled"), (2, "queued")]
    second = start(project, stand_in)
    wait_for(lambda: project.query("SELECT 1 FROM runs WHERE attempt=2 AND status='succeeded'"), 30, "the retry")
    assert second.stop() == 0
    status = json.loads(project.cli("status", "long", "--json").stdout)
    assert status["consecutive_failures"] == 0 and status["error_count"] == 0  # a shutdown is not a failure
