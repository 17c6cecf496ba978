"""Every command's exit codes, as a user meets them: one table (`scheduler.cli.exit_codes`), one
meaning each, and never a traceback."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from scheduler.cli.exit_codes import CHANGES_PENDING, DAEMON_STATE, FAILURE, INVALID, MEANINGS, NOT_FOUND, OK
from scheduler.cli.main import main
from scheduler.config.loader import load_config
from scheduler.policy.fire_request import FireRequest
from scheduler.store.catalog import apply_config
from scheduler.store.engine import open_store
from scheduler.store.fires import fire
from tests.harness import REPO, Project, wait_for

CONFIG = (
    "version: 1\njobs:\n"
    "  ok: {pipeline: fake.pipe:line, cron: '0 0 1 1 *', parameters: {mode: ok}}\n"
    "  failing: {pipeline: fake.pipe:line, cron: '0 0 1 1 *', parameters: {mode: fail}}\n"
)


def _check(project: Project, cases: list[tuple[list[str], int]]) -> None:
    wrong = []
    for args, expected in cases:
        result = project.cli(*args)
        if result.returncode != expected or "Traceback" in result.stderr:
            wrong.append(f"{' '.join(args)}: exit {result.returncode}, expected {expected}: {result.stderr[-500:]}")
    assert not wrong, "\n".join(wrong)


def test_the_readme_documents_the_exit_code_table() -> None:
    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\d)` \| ([^|]+) \|$", readme, re.M))
    assert {int(code) for code in rows} == set(MEANINGS)


def test_exit_codes_without_a_daemon(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process, through the console entry point itself (a subprocess each would cost a
    second of imports; the daemon cases below run as subprocesses)."""
    project.write_config(CONFIG)
    monkeypatch.chdir(project.root)
    for name, value in project.env.items():
        if name.startswith(("ZENML_", "PYTHONPATH")):
            monkeypatch.setenv(name, value)
    cases = [
        (["validate", "--no-pipelines"], OK),
        (["list"], OK),
        (["next", "ok"], OK),
        (["next", "nope"], NOT_FOUND),
        (["next", "--after", "yesterday"], INVALID),
        (["status"], OK),
        (["status", "nope"], NOT_FOUND),
        (["clear-errors", "nope"], NOT_FOUND),
        (["clear-errors", "ok"], NOT_FOUND),  # not in the state database until a daemon has run
        (["pause", "nope"], NOT_FOUND),
        (["pause", "ok"], NOT_FOUND),
        (["history"], OK),
        (["audit"], OK),
        (["audit", "verify"], OK),
        (["health"], DAEMON_STATE),
        (["reload"], DAEMON_STATE),
        (["trigger", "ok"], DAEMON_STATE),
        (["trigger", "nope"], NOT_FOUND),
        (["settings"], OK),
        (["config"], OK),
        (["plan", "--no-pipelines"], OK),
        (["plan", "--no-pipelines", "--detailed-exitcode"], CHANGES_PENDING),  # nothing stored yet: all added
        (["api-key", "list"], OK),
        (["api-key", "revoke", "nobody"], NOT_FOUND),
        (["api-key", "create", "--name", "two words", "--scope", "read"], INVALID),
        (["run", "--max-concurrent-runs", "0"], INVALID),
        (["no-such-command"], INVALID),
    ]
    wrong = []
    for args, expected in cases:
        monkeypatch.setattr(sys, "argv", ["zenml-scheduler", *args, "--config", str(project.config)])
        with pytest.raises(SystemExit) as ended:
            main()
        code = ended.value.code or 0
        err = capsys.readouterr().err
        if code != expected or "Traceback" in err:
            wrong.append(f"{' '.join(args)}: exit {code}, expected {expected}: {err[-500:]}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_exit_codes_with_a_daemon_and_after(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(CONFIG)
    daemon = project.start_daemon("--no-check-pipelines", env=stand_in)
    wait_for(lambda: project.cli("health").returncode == OK, 60, "a healthy daemon")
    project.env.update(stand_in)
    _check(project, [
        (["health"], OK),
        (["reload"], OK),
        (["trigger", "ok", "--wait"], OK),
        (["trigger", "failing", "--wait"], FAILURE),  # the run did not succeed
        (["pause", "ok"], OK),
        (["resume", "ok"], OK),
        (["status", "ok"], OK),
        (["clear-errors", "failing"], OK),
        (["plan", "--no-pipelines", "--detailed-exitcode"], OK),  # the running config is this file
        (["run", "--no-check-pipelines"], DAEMON_STATE),  # another daemon holds the state database
    ])  # fmt: skip
    assert daemon.stop() == 0
    conn = sqlite3.connect(project.db_path)
    with conn:
        conn.execute("UPDATE audit SET details = '{}' WHERE id = 1")
    _check(project, [(["audit", "verify"], FAILURE)])
    with conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    _check(project, [(["history"], DAEMON_STATE), (["run", "--no-check-pipelines"], DAEMON_STATE)])


def test_a_pipeline_check_that_hangs_is_a_failure_with_a_message(project: Project, tmp_path: Path) -> None:
    hangs = tmp_path / "hanging-python"
    hangs.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    hangs.chmod(0o755)
    project.write_config(CONFIG)
    project.env.update(ZENML_SCHEDULER_PYTHON=str(hangs), ZENML_SCHEDULER_PIPELINE_CHECK_TIMEOUT="1s")
    result = project.cli("validate")
    assert result.returncode == FAILURE and "Traceback" not in result.stderr
    assert "the pipeline check did not finish within 1s" in result.stderr
    project.env["ZENML_SCHEDULER_PYTHON"] = str(tmp_path / "no-such-python")
    missing = project.cli("validate")
    assert missing.returncode == INVALID and "cannot start the pipeline check" in missing.stderr


def _run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], project: Project,
              *args: str) -> tuple[int, str, str]:  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["zenml-scheduler", *args, "--config", str(project.config)])
    with pytest.raises(SystemExit) as ended:
        main()
    out, err = capsys.readouterr()
    return int(ended.value.code or 0), out, err


def test_one_rule_for_unknown_jobs_across_commands(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job neither in schedules.yaml nor in the state database is not found (4), with one
    message, whichever command names it; a job removed from the file keeps its record."""
    now = datetime.now(timezone.utc)
    project.write_config(CONFIG + "  gone: {pipeline: fake.pipe:line, cron: '0 0 1 1 *'}\n")
    monkeypatch.chdir(project.root)
    project.db_path.parent.mkdir()
    store = open_store(f"sqlite:///{project.db_path}")
    with store.write() as conn:  # what a daemon running that file left: a run of `gone`
        apply_config(conn, load_config(project.config), now, "daemon")
        fire(conn, [FireRequest("gone", "manual", "gone@manual:x", "cli:test")], load_config(project.config), now,
             timedelta(minutes=10))  # fmt: skip
    project.write_config(CONFIG)
    with store.write() as conn:
        apply_config(conn, load_config(project.config), now, "reload")  # `gone` is removed from the file
    store.close()
    unknown = f"error: no job named 'nosuch' in {project.config} or in the state database; jobs: failing, ok\n"
    for args in (["history", "--job", "nosuch"], ["audit", "--job", "nosuch"], ["status", "nosuch"],
                 ["next", "nosuch"], ["next", "ok", "nosuch"], ["pause", "nosuch"], ["resume", "nosuch"],
                 ["trigger", "nosuch"], ["clear-errors", "nosuch"]):  # fmt: skip
        assert _run_main(monkeypatch, capsys, project, *args) == (NOT_FOUND, "", unknown), args
    code, out, _ = _run_main(monkeypatch, capsys, project, "history", "--job", "gone", "--json")
    assert code == OK and [run["run_key"] for run in json.loads(out)] == ["gone@manual:x"]
    code, out, _ = _run_main(monkeypatch, capsys, project, "audit", "--job", "gone", "--json")
    assert code == OK and [e["event"] for e in json.loads(out)] == ["job-added", "fire", "job-removed"]
    code, out, _ = _run_main(monkeypatch, capsys, project, "status", "gone", "--json")
    assert code == OK and json.loads(out)["job"] == "gone" and json.loads(out)["queued"] == 1
    assert json.loads(out)["daemon"] == {"role": None, "epoch": None, "leader": None}  # no daemon leads
    code, out, _ = _run_main(monkeypatch, capsys, project, "history", "--job", "ok")  # in the file, no runs yet
    assert code == OK
    for args in (["next", "gone"], ["pause", "gone"], ["trigger", "gone"], ["clear-errors", "gone"]):
        code, out, err = _run_main(monkeypatch, capsys, project, *args)
        assert code == NOT_FOUND and err.startswith(f"error: job 'gone' is no longer in {project.config} (removed "), (
            err
        )
        assert "zenml-scheduler history --job gone" in err
