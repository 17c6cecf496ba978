"""`after: job:` triggers against the daemon as a real subprocess, with the stand-in child
interpreter (tests/harness.py): the outcome of one of our runs starts its downstream jobs, once."""

from __future__ import annotations

import json
import time

import pytest

from tests.harness import DaemonProcess, Project, wait_for

pytestmark = pytest.mark.slow

CHAIN = """\
version: 1
jobs:
  up: {pipeline: fake.pipe:up, cron: "0 0 1 1 *", parameters: {mode: ok, tag: first}}
  on-success:
    pipeline: fake.pipe:on_success
    after: {job: up}
    parameters: {mode: ok, got: "{upstream.parameters.tag}", from_key: "run of {upstream.run_key}"}
  on-failure: {pipeline: fake.pipe:on_failure, after: {job: up, status: [failed]}, parameters: {mode: ok}}
  picky: {pipeline: fake.pipe:picky, after: {job: up, when: "parameters.tag == 'second'"}, parameters: {mode: ok}}
  broken: {pipeline: fake.pipe:broken, after: {job: up, when: "parameters.missing == 'x'"}, parameters: {mode: ok}}
  grandchild: {pipeline: fake.pipe:grandchild, after: {job: on-success}, parameters: {mode: ok}}
  # the same pipeline again further down its own chain: a cycle, skipped at run time
  again: {pipeline: fake.pipe:up, after: {job: grandchild}, parameters: {mode: ok}}
"""


def start(project: Project, env: dict[str, str]) -> DaemonProcess:
    daemon = project.start_daemon("--no-check-pipelines", env=env)
    wait_for(lambda: "JOB" in daemon.out_path.read_text() or daemon.process.poll() is not None, 60, "daemon start")
    assert daemon.process.poll() is None, daemon.output
    return daemon


def rows(project: Project, job: str) -> list[dict]:
    return [dict(r) for r in project.query("SELECT * FROM runs WHERE job=? ORDER BY id", job)]


def events(project: Project, event: str, job: str | None = None) -> list[dict]:
    found = project.query("SELECT job, run_key, details FROM audit WHERE event=? ORDER BY id", event)
    return [{**dict(r), "details": json.loads(r["details"])} for r in found if job is None or r["job"] == job]


def finished(project: Project, job: str, n: int) -> list[dict]:
    done = [r for r in rows(project, job) if r["status"] in ("succeeded", "failed")]
    return done if len(done) >= n else []


def test_our_runs_start_their_downstream_jobs_once_each(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(CHAIN)
    daemon = start(project, stand_in)
    assert project.cli("trigger", "up", "--wait").returncode == 0
    assert project.cli("trigger", "up", "--no-check", "--param", "tag=second", "--wait").returncode == 0
    assert project.cli("trigger", "up", "--no-check", "--param", "mode=fail", "--wait").returncode == 1
    wait_for(lambda: finished(project, "on-success", 2) and finished(project, "grandchild", 2), 30, "downstream runs")
    wait_for(lambda: finished(project, "on-failure", 1) and finished(project, "picky", 1), 30, "more downstream")
    wait_for(lambda: len(rows(project, "again")) == 2, 30, "the cycle skips")
    time.sleep(1.5)  # a pass more: nothing else fires
    assert daemon.stop() == 0

    upstream = rows(project, "up")
    assert [r["status"] for r in upstream] == ["succeeded", "succeeded", "failed"]
    succeeded = rows(project, "on-success")
    # exactly one downstream run per successful upstream run, keyed by its ZenML run id
    assert [r["run_key"] for r in succeeded] == [f"on-success@after:run-{u['run_key']}" for u in upstream[:2]]
    assert [r["upstream"] for r in succeeded] == [u["run_key"] for u in upstream[:2]]
    assert all(r["trigger"] == "after" and r["status"] == "succeeded" for r in succeeded)
    # templates filled from the upstream run
    params = [json.loads(r["parameters_json"])["parameters"] for r in succeeded]
    assert [p["got"] for p in params] == ["first", "second"]
    assert params[0]["from_key"] == f"run of {upstream[0]['run_key']}"
    assert [r["upstream"] for r in rows(project, "on-failure")] == [upstream[2]["run_key"]]
    assert [r["upstream"] for r in rows(project, "picky")] == [upstream[1]["run_key"]]
    # a chain of two: the grandchild carries the pipelines before it
    grand = rows(project, "grandchild")
    assert [r["upstream"] for r in grand] == [r["run_key"] for r in succeeded]
    assert json.loads(grand[0]["chain_json"]) == ["up", "on_success"]
    assert json.loads(succeeded[0]["chain_json"]) == ["up"]
    # `again` would run pipeline `up` a second time in one chain: skipped as a cycle, on the record
    again = rows(project, "again")
    assert len(again) == 2
    assert {r["status"] for r in again} == {"skipped"} and all(r["reason"].startswith("cycle:") for r in again)

    # why it did and did not run, on the record, with the values `when` read
    not_matched = events(project, "after-not-matched", "picky")
    assert [e["details"]["upstream"] for e in not_matched] == [upstream[0]["run_key"], upstream[2]["run_key"]]
    assert not_matched[0]["details"]["reads"] == {"parameters.tag": "first"}
    matched = events(project, "after-matched", "picky")
    assert [e["details"]["reads"] for e in matched] == [{"parameters.tag": "second"}]
    assert len(events(project, "after-not-matched", "on-failure")) == 2
    errors = events(project, "after-error", "broken")
    assert len(errors) == 2 and "missing" in errors[0]["details"]["error"]
    assert rows(project, "broken") == []

    history = json.loads(project.cli("history", "--job", "on-success", "--json").stdout)
    assert {h["upstream"] for h in history} == {u["run_key"] for u in upstream[:2]}
    listed = project.cli("list")
    assert "after up" in listed.stdout, listed.stdout
    graph = project.cli("plan", "--no-pipelines")
    assert "up -> on-success" in graph.stdout and "on-success -> grandchild" in graph.stdout, graph.stdout


def test_an_upstream_run_that_ends_while_the_daemon_is_down_fires_once(
    project: Project, stand_in: dict[str, str]
) -> None:
    """kill -9 of the daemon while the upstream run is active: the next daemon collects its
    outcome and fires the downstream job; later restarts fire nothing more."""
    project.write_config(CHAIN.replace("{mode: ok, tag: first}", "{mode: ok, tag: first, seconds: 3}"))
    daemon = start(project, stand_in)
    assert project.cli("trigger", "up").returncode == 0
    wait_for(lambda: [r for r in rows(project, "up") if r["status"] == "running" and r["pid"]], 30, "upstream running")
    daemon.kill9()
    time.sleep(4)  # the upstream child finishes alone
    second = start(project, stand_in)
    wait_for(lambda: finished(project, "on-success", 1), 30, "the downstream run after the restart")
    assert second.stop() == 0
    third = start(project, stand_in)
    time.sleep(2.5)
    assert third.stop() == 0
    assert [r["status"] for r in rows(project, "up")] == ["succeeded"]
    assert len(rows(project, "on-success")) == 1 and len(rows(project, "grandchild")) == 1


def test_validate_names_every_job_of_a_cycle(project: Project) -> None:
    project.write_config(
        "version: 1\ndefaults: {pipeline: fake.pipe:line}\njobs:\n"
        "  a: {after: {job: c}}\n  b: {after: {job: a}}\n  c: {after: {job: b}}\n"
    )
    result = project.cli("validate", "--no-pipelines")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() + result.stdout.splitlines() if "cycle" in line]
    assert len(lines) == 3, result.stderr
    assert {line.split(":")[1] for line in lines} == {"4", "5", "6"}
