"""The daemon as a real subprocess: real SQLite, real child processes, real ZenML runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from scheduler.runs.procs import process_alive
from tests import zenml_env
from tests.harness import REPO, Project, wait_for

pytestmark = pytest.mark.slow

EVERY_2S = """\
version: 1
jobs:
  tick:
    pipeline: tinypipes.tiny:tiny_pipeline
    every: 2s
    enable_cache: false
    parameters: {{marker_dir: {markers}, sleep_s: {sleep}}}
"""


def slot_of(run_key: str) -> datetime:
    return datetime.fromisoformat(run_key.split("@", 1)[1].replace("Z", "+00:00"))


def markers(project: Project) -> list[str]:
    folder = project.root / "markers"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def finished(project: Project, n: int) -> list:
    rows = [r for r in project.runs() if r["status"] in ("succeeded", "failed", "lost", "cancelled")]
    return rows if len(rows) >= n else []


def test_fires_on_schedule_records_runs_and_audit(project: Project) -> None:
    project.write_config(EVERY_2S.format(markers=project.root / "markers", sleep=0))
    daemon = project.start_daemon()
    wait_for(lambda: finished(project, 2), 120, "two finished runs")
    assert daemon.stop() == 0

    runs = project.runs()
    launched = [r for r in runs if r["status"] != "skipped"]
    assert all(r["status"] == "succeeded" for r in launched), [
        (r["run_key"], r["status"], r["error"], r["reason"]) for r in launched if r["status"] != "succeeded"
    ]
    for run in runs:
        assert re.fullmatch(r"tick@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["run_key"])
        assert slot_of(run["run_key"]).second % 2 == 0  # on the 2 s grid
        assert run["scheduled_for"] is not None
    assert len({r["run_key"] for r in runs}) == len(runs)
    for run in launched:
        assert run["zenml_run_id"] and run["exit_code"] == 0 and run["started_at"] and run["finished_at"]
        assert os.path.exists(run["log_path"])
        assert json.loads(run["parameters_json"])["parameters"]["sleep_s"] == 0
    # Slots that came due while a run was active were skipped on the record, not dropped.
    skipped = [r for r in runs if r["status"] == "skipped"]
    assert all(r["reason"].startswith("concurrency:") for r in skipped)
    # each launched slot ran exactly once
    assert len(markers(project)) == len(launched)

    events = Counter(r["event"] for r in project.query("SELECT event FROM audit"))
    assert events["fire"] == len(launched) and events["run-started"] == len(launched)
    assert events["run-succeeded"] == len(launched)
    assert events["skip"] == len(skipped)
    assert events["daemon-started"] == 1 and events["daemon-stopped"] == 1
    started = project.query("SELECT details FROM audit WHERE event='run-started' LIMIT 1")[0]
    assert json.loads(started["details"])["launch"]["pipeline"] == "tinypipes.tiny:tiny_pipeline"

    verify = project.cli("audit", "verify")
    assert verify.returncode == 0, verify.stderr
    history = json.loads(project.cli("history", "--json", "--limit", "100").stdout)
    assert {h["run_key"] for h in history} == {r["run_key"] for r in runs}
    for key in (
        "run_key",
        "job",
        "trigger",
        "status",
        "scheduled_for",
        "started_at",
        "finished_at",
        "zenml_run_id",
        "error",
    ):
        assert key in history[0]
    # the JSON log has one line per audit event, machine-readable
    logged = [json.loads(line) for line in daemon.log_path.read_text().splitlines() if line.startswith("{")]
    assert sum(1 for entry in logged if entry["msg"] == "fire") == len(launched)


KILL9 = """\
version: 1
jobs:
  long:
    pipeline: tinypipes.tiny:tiny_pipeline
    every: 2s
    enable_cache: false
    parameters: {{marker_dir: {markers}, sleep_s: 40}}
  short:
    pipeline: tinypipes.tiny:tiny_pipeline
    every: 2s
    enable_cache: false
    parameters: {{marker_dir: {markers}}}
"""


def test_kill9_then_restart_never_runs_a_slot_twice(project: Project) -> None:
    project.write_config(KILL9.format(markers=project.root / "markers"))
    first = project.start_daemon()
    long_run = wait_for(
        lambda: project.query("SELECT * FROM runs WHERE job='long' AND status='running' AND pid IS NOT NULL"),
        120,
        "a running run",
    )[0]
    first.kill9()
    # Slots of both jobs come due while no daemon runs (inside the 10 min grace window); the short
    # job's run in flight finishes meanwhile (waited for: a cold ZenML child on a busy machine can
    # take a while), the long one is still going at restart.
    in_flight = project.query("SELECT pid, pid_start FROM runs WHERE job='short' AND status='running'")
    wait_for(
        lambda: not any(r["pid"] and process_alive(r["pid"], r["pid_start"]) for r in in_flight),
        120,
        "the short run in flight to end",
    )
    time.sleep(4)
    assert process_alive(long_run["pid"], long_run["pid_start"]), "the long run ended before the restart"
    second = project.start_daemon()
    wait_for(
        lambda: [r for r in project.runs() if r["trigger"] == "catchup" and r["status"] == "succeeded"],
        120,
        "the caught-up slot to finish",
    )
    wait_for(
        lambda: project.query("SELECT 1 FROM runs WHERE id=? AND status != 'running'", long_run["id"]),
        120,
        "the adopted run to finish",
    )
    assert second.stop(signal.SIGINT) == 0  # SIGINT: the Ctrl+C path; waits for runs in flight

    runs = project.runs()
    keys = [r["run_key"] for r in runs]
    assert len(keys) == len(set(keys))
    adopted = next(r for r in runs if r["id"] == long_run["id"])
    assert adopted["status"] == "succeeded", dict(adopted)  # followed to completion by the new daemon
    assert "adopted" in second.log_path.read_text()
    catchups = {r["job"]: r for r in runs if r["trigger"] == "catchup"}
    assert catchups["short"]["status"] == "succeeded"
    # long was still active at restart: its newest missed slot is skipped on the record
    assert catchups["long"]["status"] == "skipped" and catchups["long"]["reason"].startswith("concurrency:")
    launched = [r for r in runs if r["status"] != "skipped"]
    assert all(r["status"] == "succeeded" for r in launched), [
        (r["run_key"], r["status"], r["error"], r["reason"]) for r in launched if r["status"] != "succeeded"
    ]
    # one marker per launched run, and never two for the same run key (same run name suffix)
    suffixes = [m.split("-")[3] for m in markers(project)]
    assert len(suffixes) == len(launched) and len(set(suffixes)) == len(suffixes)
    skips = [json.loads(r["details"]) for r in project.query("SELECT details FROM audit WHERE event='skip'")]
    assert any(s.get("code") == "coalesced" for s in skips)
    assert project.cli("audit", "verify").returncode == 0


def test_second_daemon_refuses_naming_the_first(project: Project) -> None:
    project.write_config('version: 1\njobs:\n  idle: {pipeline: tinypipes.tiny:tiny_pipeline, cron: "0 0 1 1 *"}\n')
    first = project.start_daemon("--no-check-pipelines")
    wait_for(lambda: "JOB" in first.out_path.read_text(), 60, "the first daemon to start")
    second = project.start_daemon("--no-check-pipelines")
    assert second.process.wait(timeout=60) == 3
    assert f"pid {first.process.pid} on" in second.log_path.read_text()
    assert first.process.poll() is None
    assert first.stop() == 0
    third = project.start_daemon("--no-check-pipelines")  # a stopped daemon does not block a restart
    wait_for(lambda: "JOB" in third.out_path.read_text(), 60, "a restarted daemon")
    assert third.stop() == 0


def test_manual_trigger_pause_and_resume(project: Project) -> None:
    project.write_config(
        "version: 1\njobs:\n"
        "  report:\n    pipeline: tinypipes.tiny:tiny_pipeline\n    cron: '0 0 1 1 *'\n    enable_cache: false\n"
        "  fast:\n    pipeline: tinypipes.tiny:tiny_pipeline\n    every: 1s\n    enable_cache: false\n"
    )
    no_daemon = project.cli("trigger", "report")
    assert no_daemon.returncode == 3 and "no zenml-scheduler daemon is running" in no_daemon.stderr
    paused = project.cli("pause", "fast")
    assert paused.returncode == 4 and "start the daemon once first" in paused.stderr

    daemon = project.start_daemon("--no-check-pipelines")
    wait_for(lambda: "JOB" in daemon.out_path.read_text(), 60, "daemon start")
    assert project.cli("pause", "fast").returncode == 0
    mark = project.query("SELECT COALESCE(MAX(id), 0) AS m FROM runs")[0]["m"]
    audit_mark = project.query("SELECT MAX(id) AS m FROM audit")[0]["m"]
    result = project.cli("trigger", "report", "--param", "label=manual-1", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded" and run["trigger"] == "manual" and run["zenml_run_id"]
    assert run["run_key"].startswith("report@manual:")
    assert run["parameters"]["parameters"]["label"] == "manual-1"
    bad = project.cli("trigger", "report", "--param", "sleep_s=abc")
    assert bad.returncode == 2 and "sleep_s" in bad.stderr
    unknown = project.cli("trigger", "nope")
    assert unknown.returncode == 4 and "report" in unknown.stderr
    wait_for(
        lambda: project.query(
            "SELECT 1 FROM audit WHERE job='fast' AND event='skip' AND details LIKE '%\"paused\"%' AND id > ?",
            audit_mark,
        ),
        30,
        "a skipped slot of the paused job",
    )
    # paused slots are audited but take no run row: their keys stay free for the catch-up on resume
    assert not project.query("SELECT 1 FROM runs WHERE job='fast' AND id > ?", mark)
    listed = json.loads(project.cli("list", "--json").stdout)
    assert {j["job"]: j["state"] for j in listed} == {"report": "active", "fast": "paused"}
    assert project.cli("resume", "fast").returncode == 0
    mark = project.query("SELECT MAX(id) AS m FROM runs")[0]["m"]
    resumed = wait_for(
        lambda: project.query("SELECT * FROM runs WHERE job='fast' AND status != 'skipped' AND id > ?", mark),
        60,
        "the resumed job to fire",
    )
    assert resumed[0]["trigger"] in ("catchup", "schedule")
    # catchup: latest - on resume, the slots missed while paused are audited and only the newest may run
    coalesced = project.query(
        "SELECT 1 FROM audit WHERE job='fast' AND event='skip' AND details LIKE '%coalesced%' AND id > ?", audit_mark
    )
    assert coalesced
    assert daemon.stop(signal.SIGINT) == 0
    events = [r["event"] for r in project.query("SELECT event FROM audit")]
    assert {"manual-trigger", "pause", "resume"} <= set(events)


def test_sigterm_waits_for_running_runs_then_stops(project: Project) -> None:
    project.write_config(EVERY_2S.format(markers=project.root / "markers", sleep=30))
    daemon = project.start_daemon(
        "--no-check-pipelines", env={"ZENML_SCHEDULER_SHUTDOWN_GRACE": "3s", "ZENML_SCHEDULER_KILL_GRACE": "5s"}
    )
    run = wait_for(
        lambda: project.query("SELECT * FROM runs WHERE status='running' AND pid IS NOT NULL"), 120, "a running run"
    )[0]
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 30
    stopped = project.query("SELECT * FROM runs WHERE id=?", run["id"])[0]
    assert stopped["status"] == "cancelled" and "shutdown" in stopped["error"]
    with pytest.raises(ProcessLookupError):
        os.killpg(run["pid"], 0)  # the whole process group is gone


def test_missed_slot_outside_grace_is_audited_not_fired(project: Project) -> None:
    project.write_config("version: 1\njobs:\n  hourly: {pipeline: tinypipes.tiny:tiny_pipeline, every: 1h}\n")
    daemon = project.start_daemon("--no-check-pipelines")
    wait_for(lambda: "JOB" in daemon.out_path.read_text(), 60, "daemon start")
    assert daemon.stop() == 0
    # pretend the daemon has been down for three hours
    import sqlite3

    conn = sqlite3.connect(project.db_path)
    past = (datetime.now().astimezone() - timedelta(hours=3)).astimezone().replace(tzinfo=None)
    conn.execute("UPDATE jobs SET last_slot=?", (past.isoformat(sep=" "),))
    conn.commit()
    conn.close()
    daemon = project.start_daemon("--no-check-pipelines", env={"ZENML_SCHEDULER_MISFIRE_GRACE": "1s"})
    wait_for(lambda: "JOB" in daemon.out_path.read_text(), 60, "daemon restart")
    assert daemon.stop() == 0
    skips = [json.loads(r["details"]) for r in project.query("SELECT details FROM audit WHERE event='skip'")]
    assert skips and skips[0]["code"] == "missed" and skips[0]["count"] in (2, 3)
    assert project.runs() == []


def test_bundled_schedules_yaml_is_valid(project: Project) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scheduler", "validate", str(REPO / "schedules.yaml")],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "OK (" in result.stdout


def test_training_pipeline_end_to_end_through_the_daemon(project: Project) -> None:
    zenml_env.make_project(project.root / "e2e", with_training=True)
    e2e = Project(project.root / "e2e", project.env)
    e2e.write_config(
        "version: 1\njobs:\n"
        "  retrain:\n"
        "    pipeline: pipelines.training:training_pipeline\n"
        "    cron: '0 3 1 1 *'\n"
        "    parameters: {data_url: data/train.csv, model_type: random_forest}\n"
        "    steps: {preprocess: {parameters: {test_size: 0.3}}}\n"
        "    enable_cache: false\n"
    )
    daemon = e2e.start_daemon()
    project.daemons.append(daemon)
    wait_for(lambda: "JOB" in daemon.out_path.read_text(), 120, "daemon start")
    result = e2e.cli("trigger", "retrain", "--param", "model_type=gradient_boosting", "--wait", "--json")
    assert result.returncode == 0, result.stderr + daemon.output
    run = json.loads(result.stdout)
    assert daemon.stop() == 0
    stored = zenml_env.describe_run(
        zenml_env.child_env(e2e.root, Path(project.env["ZENML_CONFIG_PATH"])), run["zenml_run_id"]
    )
    assert stored["id"] == run["zenml_run_id"] and stored["name"] == run["zenml_run_name"]
    assert stored["status"] == "completed"
    assert set(stored["tags"]) >= {"zenml-scheduler", "job:retrain", "trigger:manual"}
    assert 0.5 < stored["outputs"]["evaluate.accuracy"]["value"] <= 1.0
    assert run["parameters"]["parameters"]["model_type"] == "gradient_boosting"
    assert run["parameters"]["steps"] == {"preprocess": {"parameters": {"test_size": 0.3}}}


def test_timeout_stops_a_real_zenml_run_and_leaves_it_finished_in_the_store(project: Project) -> None:
    project.write_config(
        "version: 1\njobs:\n  slow:\n    pipeline: tinypipes.tiny:tiny_pipeline\n    cron: '0 0 1 1 *'\n"
        "    enable_cache: false\n    timeout: 30s\n    parameters: {sleep_s: 120}\n"
    )
    daemon = project.start_daemon("--no-check-pipelines")
    wait_for(lambda: "JOB" in daemon.out_path.read_text(), 60, "daemon start")
    assert project.cli("trigger", "slow").returncode == 0
    run = wait_for(lambda: project.query("SELECT * FROM runs WHERE status='timed_out'"), 90, "the timeout")[0]
    assert run["error"] == "timed out after 30s"
    reconciled = wait_for(
        lambda: project.query("SELECT details FROM audit WHERE event='zenml-run-reconciled'"), 60, "the repair"
    )
    report = json.loads(reconciled[0]["details"])
    assert daemon.stop() == 0
    assert report["found"] is True and report["status_after"] == "failed"
    stored = zenml_env.describe_run(
        zenml_env.child_env(project.root, Path(project.env["ZENML_CONFIG_PATH"])), run["zenml_run_name"]
    )
    assert stored["status"] == "failed" and stored["end_time"]  # nothing left "running" in ZenML
