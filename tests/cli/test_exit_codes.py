"""Every command's exit codes, as a user meets them: one table (`scheduler.cli.exit_codes`), one
meaning each, and never a traceback."""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

import pytest

from scheduler.cli.exit_codes import CHANGES_PENDING, DAEMON_STATE, FAILURE, INVALID, MEANINGS, NOT_FOUND, OK
from scheduler.cli.main import main
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
