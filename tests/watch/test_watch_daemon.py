"""File-watch jobs against the daemon as a real subprocess: real files in temporary folders,
the stand-in child interpreter (tests/harness.py) for quick runs."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from scheduler.policy.fire_request import FINAL_STATUSES as FINAL
from tests import zenml_env
from tests.daemon.test_policies import audit_of, runs_of, start
from tests.harness import REPO, DaemonProcess, Project, wait_for

pytestmark = pytest.mark.slow


def watch_job(name: str, folder: str, *, params: str = 'input_path: "{path}"', extra: str = "", **watch: object) -> str:
    """A watch job; `watch` goes into its watch: block, `extra` is more job fields."""
    options = ", ".join(f"{key}: {json.dumps(value)}" for key, value in {"path": folder, **watch}.items())
    return (
        f"  {name}:\n    pipeline: fake.pipe:line\n    watch: {{{options}}}\n    parameters: {{mode: ok, {params}}}\n"
        + (f"    {extra}\n" if extra else "")
    )


def configure(project: Project, *jobs: str) -> None:
    project.write_config("version: 1\njobs:\n" + "".join(jobs))


def watching(project: Project, daemon: DaemonProcess, job: str) -> None:
    wait_for(lambda: audit_of(project, job, "watch-started"), 30, f"{job} watching", interval=0.05)
    assert daemon.process.poll() is None, daemon.output


def start_watching(project: Project, stand_in: dict[str, str], *jobs: str, **env: str) -> DaemonProcess:
    """The daemon, once each of `jobs` has its watcher in place."""
    daemon = start(project, stand_in, **env)
    for job in jobs:
        watching(project, daemon, job)
    return daemon


def inputs(project: Project, job: str) -> list[list[str]]:
    """The files each first attempt of `job` was given, in run order."""
    given = []
    for run in runs_of(project, job):
        if run["attempt"] == 1 and run["status"] != "skipped":
            parameters = json.loads(run["parameters_json"])["parameters"]
            given.append(parameters.get("input_paths") or [parameters["input_path"]])
    return given


def names(paths: list[list[str]]) -> Counter[str]:
    return Counter(Path(p).name for batch in paths for p in batch)


def done(project: Project, job: str) -> list[sqlite3.Row]:
    return [r for r in runs_of(project, job) if r["status"] == "succeeded"]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_a_file_written_slowly_is_dispatched_once_after_settle(project: Project, stand_in: dict[str, str]) -> None:
    incoming = project.root / "incoming"
    incoming.mkdir()
    configure(project, watch_job("score", "incoming", patterns=["*.csv"], settle="1500ms"))
    daemon = start_watching(project, stand_in, "score")
    with open(incoming / "slow.csv", "w") as fh:
        for line in range(7):  # 3 s of writing, a line every half second
            if line:
                time.sleep(0.5)
            fh.write(f"{line},x\n")
            fh.flush()
    completed = datetime.now(timezone.utc)
    wait_for(lambda: done(project, "score"), 30, "the run of slow.csv")
    time.sleep(1.5)
    (run,) = runs_of(project, "score")
    delay = (utc(run["created_at"]) - completed).total_seconds()
    assert 1.4 <= delay <= 3.0, delay  # settle (1.5 s) after the last write, not before
    (recorded,) = project.query("SELECT * FROM watched_files")
    assert recorded["size"] == (incoming / "slow.csv").stat().st_size and recorded["run_key"] == run["run_key"]
    assert run["run_key"].startswith("score@file:slow.csv#") and run["trigger"] == "file"
    assert inputs(project, "score") == [[str((incoming / "slow.csv").resolve())]]
    assert daemon.stop() == 0


def test_a_thousand_files_per_batch_land_in_exactly_one_batch_each(project: Project, stand_in: dict[str, str]) -> None:
    incoming = project.root / "incoming"
    incoming.mkdir()
    configure(
        project,
        watch_job("batches", "incoming", params='input_paths: "{paths}"', settle="500ms", batch="per_batch",
                  batch_window="2s", max_batch=300),
    )  # fmt: skip
    daemon = start_watching(project, stand_in, "batches")
    for n in range(1000):
        (incoming / f"part-{n:04d}.csv").write_text(f"{n}\n")
    wait_for(lambda: sum(names(inputs(project, "batches")).values()) >= 1000, 60, "1,000 files in batches")
    time.sleep(3)  # nothing more may come
    batches = inputs(project, "batches")
    counted = names(batches)
    assert set(counted) == {f"part-{n:04d}.csv" for n in range(1000)}
    assert set(counted.values()) == {1}, [name for name, n in counted.items() if n > 1]
    assert max(len(batch) for batch in batches) == 300 and len(batches) >= 4
    keys = [r["run_key"] for r in runs_of(project, "batches")]
    assert len(keys) == len(set(keys)) and all(key.startswith("batches@files:") for key in keys)
    wait_for(lambda: len(done(project, "batches")) == len(batches), 60, "every batch run finished")
    assert daemon.stop() == 0


def test_two_hundred_files_per_file_each_run_exactly_once(project: Project, stand_in: dict[str, str]) -> None:
    incoming = project.root / "incoming"
    incoming.mkdir()
    configure(project, watch_job("each", "incoming", settle="500ms"))
    daemon = start_watching(project, stand_in, "each", ZENML_SCHEDULER_MAX_CONCURRENT_RUNS="16")
    for n in range(200):
        (incoming / f"file-{n:03d}.csv").write_text(f"{n}\n")
    wait_for(lambda: len(done(project, "each")) >= 200, 120, "200 runs")
    time.sleep(2)
    counted = names(inputs(project, "each"))
    assert len(counted) == 200 and set(counted.values()) == {1}
    assert len(runs_of(project, "each")) == 200
    assert project.query("SELECT COUNT(*) AS n FROM watched_files")[0]["n"] == 200
    assert daemon.stop() == 0


def test_kill9_with_files_pending_then_restart_runs_each_file_once(project: Project, stand_in: dict[str, str]) -> None:
    incoming = project.root / "incoming"
    incoming.mkdir()
    configure(project, watch_job("each", "incoming", settle="1s"))
    daemon = start_watching(project, stand_in, "each")
    for n in range(60):  # arriving over ~1.5 s: some settled and running, some pending at the kill
        (incoming / f"a-{n:02d}.csv").write_text(f"{n}\n")
        time.sleep(0.025)
    wait_for(lambda: runs_of(project, "each"), 20, "the first runs")
    daemon.kill9()
    dispatched_before = len(runs_of(project, "each"))
    for n in range(20):  # arriving while the daemon is down
        (incoming / f"b-{n:02d}.csv").write_text(f"{n}\n")
    daemon = start(project, stand_in)
    wait_for(lambda: sum(names(inputs(project, "each")).values()) >= 80, 60, "all 80 files dispatched")
    time.sleep(2.5)
    counted = names(inputs(project, "each"))
    assert len(counted) == 80 and set(counted.values()) == {1}, counted
    keys = [r["run_key"] for r in runs_of(project, "each") if r["attempt"] == 1]
    assert len(keys) == 80 == len(set(keys))
    assert 0 < dispatched_before < 80
    assert daemon.stop() == 0
    assert project.cli("audit", "verify").returncode == 0


def test_catchup_none_records_files_found_at_start_as_skipped(project: Project, stand_in: dict[str, str]) -> None:
    incoming = project.root / "incoming"
    incoming.mkdir()
    configure(project, watch_job("live-only", "incoming", settle="300ms", extra="catchup: none"))
    (incoming / "before.csv").write_text("1\n")
    daemon = start_watching(project, stand_in, "live-only")
    (incoming / "after.csv").write_text("2\n")
    wait_for(lambda: done(project, "live-only"), 20, "the run of after.csv")
    wait_for(lambda: len(runs_of(project, "live-only")) == 2, 20, "before.csv on the record")
    status = {
        Path(json.loads(r["parameters_json"])["parameters"]["input_path"]).name: r
        for r in runs_of(project, "live-only")
    }
    assert status["before.csv"]["status"] == "skipped" and status["before.csv"]["reason"].startswith("catchup-none")
    assert status["after.csv"]["status"] == "succeeded"
    assert daemon.stop() == 0
    # A clean restart runs neither again.
    daemon = start_watching(project, stand_in, "live-only")
    time.sleep(1.5)
    assert len(runs_of(project, "live-only")) == 2
    assert daemon.stop() == 0


def test_patterns_ignore_and_escapes_are_refused(project: Project, stand_in: dict[str, str], tmp_path: Path) -> None:
    incoming = project.root / "incoming"
    (incoming / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("top secret\n")
    configure(project, watch_job("score", "incoming", patterns=["*.csv"], settle="300ms"))
    daemon = start_watching(project, stand_in, "score")
    for name in (".hidden.csv", "x.tmp", "y.csv.part", "notes.txt", "sub/deep.csv", "good.csv"):
        (incoming / name).write_text("1\n")
    (incoming / "link.csv").symlink_to(outside / "secret.csv")  # absolute link out of the folder
    (incoming / "up.csv").symlink_to(Path("..") / ".." / "outside" / "secret.csv")  # relative, through ..
    (incoming / "inner.csv").symlink_to("good.csv")  # stays inside: allowed, resolved
    assert (incoming / "up.csv").resolve() == (outside / "secret.csv").resolve()
    wait_for(lambda: len(audit_of(project, "score", "file-refused")) >= 2, 20, "two refusals")
    wait_for(lambda: len(done(project, "score")) >= 2, 20, "good.csv and inner.csv")
    time.sleep(1.5)
    given = sorted(p for batch in inputs(project, "score") for p in batch)
    assert given == [str((incoming / "good.csv").resolve())] * 2
    refused = {event["file"]: event for event in audit_of(project, "score", "file-refused")}
    assert set(refused) == {"link.csv", "up.csv"}
    assert all(event["reason"] == "resolves outside the watched folder" for event in refused.values())
    assert all("secret" not in run["parameters_json"] for run in runs_of(project, "score"))
    assert daemon.stop() == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: an unreadable file cannot be made")
def test_unreadable_file_is_refused(project: Project, stand_in: dict[str, str]) -> None:
    incoming = project.root / "incoming"
    incoming.mkdir()
    configure(project, watch_job("score", "incoming", settle="300ms"))
    daemon = start_watching(project, stand_in, "score")
    locked = incoming / "locked.csv"
    locked.write_text("1\n")
    locked.chmod(0)
    wait_for(lambda: audit_of(project, "score", "file-refused"), 20, "the refusal")
    assert audit_of(project, "score", "file-refused")[0]["reason"].startswith("not readable")
    assert runs_of(project, "score") == []
    assert daemon.stop() == 0


def test_on_modified_ignore_and_retrigger(project: Project, stand_in: dict[str, str]) -> None:
    for folder in ("once", "again"):
        (project.root / folder).mkdir()
    configure(
        project,
        watch_job("once", "once", settle="300ms"),
        watch_job("again", "again", settle="300ms", on_modified="retrigger"),
    )
    daemon = start_watching(project, stand_in, "once", "again")
    for folder in ("once", "again"):
        (project.root / folder / "a.csv").write_text("v1\n")
        (project.root / folder / "b.csv").write_text("same\n")
    wait_for(lambda: len(done(project, "once")) == 2 and len(done(project, "again")) == 2, 20, "first runs")
    for folder in ("once", "again"):
        (project.root / folder / "a.csv").write_text("v2, longer\n")  # new content
        os.utime(project.root / folder / "b.csv")  # touched, same content
    wait_for(lambda: len(done(project, "again")) == 3, 20, "the retrigger of a.csv")
    wait_for(lambda: audit_of(project, "once", "file-modified-ignored"), 20, "the ignored change on the record")
    time.sleep(1.5)
    assert names(inputs(project, "once")) == {"a.csv": 1, "b.csv": 1}
    assert names(inputs(project, "again")) == {"a.csv": 2, "b.csv": 1}
    keys = [r["run_key"] for r in runs_of(project, "again") if "a.csv" in r["run_key"]]
    assert len(set(keys)) == 2
    assert daemon.stop() == 0


def test_ready_marker_dispatches_a_folder_once_the_marker_appears(project: Project, stand_in: dict[str, str]) -> None:
    incoming = project.root / "incoming"
    incoming.mkdir()
    configure(project, watch_job("marked", "incoming", ready_marker="_SUCCESS", batch="per_batch",
                                 batch_window="200ms", params='input_paths: "{paths}"'))  # fmt: skip
    daemon = start_watching(project, stand_in, "marked")
    for n in range(3):
        (incoming / f"part-{n}.csv").write_text("1\n")
    time.sleep(2.5)
    assert runs_of(project, "marked") == []  # no marker, no run, however long the files sit
    (incoming / "_SUCCESS").touch()
    wait_for(lambda: done(project, "marked"), 20, "the batch after the marker")
    assert inputs(project, "marked") == [[str((incoming / f"part-{n}.csv").resolve()) for n in range(3)]]
    assert daemon.stop() == 0


def test_polling_pause_resume_and_a_folder_that_appears_later(project: Project, stand_in: dict[str, str]) -> None:
    configure(project, watch_job("polled", "later", settle="300ms", poll=True, scan_interval="200ms"))
    daemon = start(project, stand_in)
    wait_for(lambda: audit_of(project, "polled", "watch-error"), 20, "the missing folder on the record")
    assert "does not exist" in audit_of(project, "polled", "watch-error")[0]["error"]
    later = project.root / "later"
    later.mkdir()
    watching(project, daemon, "polled")
    assert audit_of(project, "polled", "watch-started")[0]["mode"] == "polling"
    (later / "one.csv").write_text("1\n")
    wait_for(lambda: done(project, "polled"), 20, "the polled file's run")
    assert project.cli("pause", "polled").returncode == 0
    (later / "two.csv").write_text("2\n")
    time.sleep(2.5)
    assert len(runs_of(project, "polled")) == 1  # held while paused, not recorded
    assert project.cli("resume", "polled").returncode == 0
    wait_for(lambda: len(done(project, "polled")) == 2, 20, "the held file after resume")
    assert names(inputs(project, "polled")) == {"one.csv": 1, "two.csv": 1}
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_a_dropped_csv_is_scored_by_a_real_zenml_run(project: Project) -> None:
    """The quick start's second half: train, drop a CSV, get predictions and a run in history."""
    zenml_env.make_project(project.root / "e2e", with_training=True)
    e2e = Project(project.root / "e2e", project.env)
    (e2e.root / "data" / "incoming").mkdir()
    e2e.write_config(
        "version: 1\njobs:\n"
        "  train:\n"
        "    pipeline: pipelines.training:training_pipeline\n"
        "    cron: '0 3 1 1 *'\n"
        "    parameters: {data_url: data/train.csv, model_type: random_forest}\n"
        "    enable_cache: false\n"
        "  score:\n"
        "    pipeline: pipelines.batch_inference:batch_inference_pipeline\n"
        "    watch: {path: data/incoming, patterns: ['*.csv'], settle: 1s}\n"
        "    parameters: {input_path: '{path}'}\n"
    )
    daemon = e2e.start_daemon()
    project.daemons.append(daemon)
    wait_for(lambda: "JOB" in daemon.out_path.read_text() or daemon.process.poll() is not None, 120, "daemon start")
    assert daemon.process.poll() is None, daemon.output
    trained = e2e.cli("trigger", "train", "--wait")
    assert trained.returncode == 0, trained.stderr + daemon.output
    sample = REPO / "data" / "samples" / "new_batch.csv"
    shutil.copy(sample, e2e.root / "data" / "incoming" / "new_batch.csv")
    wait_for(lambda: [r for r in runs_of(e2e, "score") if r["status"] in FINAL], 120, "the scoring run")
    (run,) = runs_of(e2e, "score")
    assert run["status"] == "succeeded", run["error"]
    predictions = (e2e.root / "data" / "predictions" / "new_batch.csv").read_text().splitlines()
    rows = sample.read_text().splitlines()
    assert len(predictions) == len(rows)
    assert predictions[0].split(",")[: len(rows[0].split(","))] == rows[0].split(",")
    assert "prediction" in predictions[0].split(",")
    history = json.loads(e2e.cli("history", "--job", "score", "--json").stdout)
    assert history[0]["trigger"] == "file" and history[0]["run_key"].startswith("score@file:new_batch.csv#")
    stored = zenml_env.describe_run(
        zenml_env.child_env(e2e.root, Path(project.env["ZENML_CONFIG_PATH"])), run["zenml_run_id"]
    )
    assert stored["status"] == "completed"
    assert set(stored["tags"]) >= {"zenml-scheduler", "job:score", "trigger:file"}
    assert daemon.stop() == 0


def test_validate_warns_of_a_missing_folder_and_manual_runs_need_the_templated_values(project: Project) -> None:
    configure(project, watch_job("score", "not-there-yet"))
    result = project.cli("validate", "--no-pipelines")
    assert result.returncode == 0, result.stderr
    assert f"{project.config}:5:" in result.stderr and "warning: watch folder" in result.stderr
    assert "does not exist yet" in result.stderr
    refused = project.cli("trigger", "score")
    assert refused.returncode == 2 and "input_path" in refused.stderr and "watch job" in refused.stderr


def test_reload_moves_and_removes_a_watcher(project: Project, stand_in: dict[str, str]) -> None:
    for folder in ("first", "second"):
        (project.root / folder).mkdir()
    configure(project, watch_job("moving", "first", settle="300ms"))
    daemon = start_watching(project, stand_in, "moving")
    (project.root / "first" / "a.csv").write_text("1\n")
    wait_for(lambda: done(project, "moving"), 20, "the run of first/a.csv")
    configure(project, watch_job("moving", "second", settle="300ms"))
    wait_for(lambda: len(audit_of(project, "moving", "watch-started")) == 2, 30, "the watcher of the new folder")
    (project.root / "first" / "b.csv").write_text("2\n")  # no longer watched
    (project.root / "second" / "c.csv").write_text("3\n")
    wait_for(lambda: len(done(project, "moving")) == 2, 20, "the run of second/c.csv")
    configure(project, "  other: {pipeline: fake.pipe:line, cron: '0 3 1 1 *'}\n")
    wait_for(lambda: project.query("SELECT 1 FROM audit WHERE event='job-removed' AND job='moving'"), 30, "removal")
    (project.root / "second" / "d.csv").write_text("4\n")
    time.sleep(1.5)
    assert names(inputs(project, "moving")) == {"a.csv": 1, "c.csv": 1}
    assert daemon.stop() == 0


def test_a_failing_file_run_is_retried_under_its_run_key(project: Project, stand_in: dict[str, str]) -> None:
    incoming = project.root / "incoming"
    incoming.mkdir()
    job = watch_job("flaky", "incoming", settle="300ms", extra="retries: {max: 1, backoff: 1s}")
    configure(project, job.replace("mode: ok", "mode: fail"))
    daemon = start_watching(project, stand_in, "flaky")
    (incoming / "a.csv").write_text("1\n")
    wait_for(lambda: len([r for r in runs_of(project, "flaky") if r["status"] == "failed"]) == 2, 30, "two attempts")
    first, second = runs_of(project, "flaky")
    assert first["run_key"] == second["run_key"] and (first["attempt"], second["attempt"]) == (1, 2)
    assert first["parameters_json"] == second["parameters_json"]  # the retry scores the same file
    assert daemon.stop() == 0


def test_a_watch_on_the_state_directory_is_refused_at_start_and_on_reload(
    project: Project, stand_in: dict[str, str]
) -> None:
    """Such a watch once started 426 runs in 20 s: every run log and database write was a new file."""
    (project.root / ".zenml-scheduler").mkdir()
    configure(project, watch_job("itself", ".zenml-scheduler"))
    checked = project.cli("validate", "--no-pipelines")
    assert checked.returncode == 2 and f"{project.config}:5:19: watch.path " in checked.stderr, checked.stderr
    assert "inside the state directory" in checked.stderr
    configure(project, watch_job("above", ".", recursive=True))
    above = project.cli("validate", "--no-pipelines")
    assert above.returncode == 2 and "contains the state directory" in above.stderr, above.stderr
    configure(project, watch_job("itself", ".zenml-scheduler"))
    refused = project.start_daemon("--no-check-pipelines", env=stand_in)
    assert refused.process.wait(timeout=60) == 2, refused.output
    assert "inside the state directory" in refused.output and "Traceback" not in refused.output
    (rejected,) = project.query("SELECT source, details FROM audit WHERE event='config-rejected'")
    assert rejected["source"] == "daemon" and "inside the state directory" in rejected["details"]
    # A reload is held to the same rule: the last good config keeps running.
    (project.root / "incoming").mkdir()
    configure(project, watch_job("files", "incoming", settle="300ms"))
    daemon = start_watching(project, stand_in, "files")
    configure(project, watch_job("files", ".zenml-scheduler/runs", settle="300ms", recursive=True))
    wait_for(lambda: len(project.query("SELECT 1 FROM audit WHERE event='config-rejected'")) == 2, 30, "rejection")
    (project.root / "incoming" / "a.csv").write_text("1\n")
    wait_for(lambda: done(project, "files"), 20, "the run of incoming/a.csv: the old watch still applies")
    time.sleep(1)
    assert names(inputs(project, "files")) == {"a.csv": 1}  # the run's own log started nothing
    assert daemon.stop() == 0
