"""Commands on a state folder mounted read-only (a real read-only bind mount, see
tests/read_only_fs.py): the read commands open the database read-only and work, also beside a
running daemon; the commands that write, and the daemon, exit 3 saying the file system is
read-only."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from scheduler.cli.exit_codes import DAEMON_STATE, OK
from scheduler.config.loader import load_config
from scheduler.store import inbox
from scheduler.store.catalog import apply_config
from scheduler.store.engine import open_store
from tests.harness import Project, wait_for
from tests.read_only_fs import read_only_command, unavailable

CONFIG = "version: 1\njobs:\n  ok: {pipeline: fake.pipe:line, cron: '0 0 1 1 *', parameters: {mode: ok}}\n"
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=timezone.utc)

# Runs each command through the console entry point in one process (one import for them all).
DRIVER = """
import contextlib, io, json, sys
from scheduler.cli.main import main
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["zenml-scheduler", *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as ended:
            code = ended.code or 0
    results.append({"args": args, "code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


@pytest.fixture(autouse=True)
def _read_only_mounts() -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)


def run_read_only(project: Project, commands: list[list[str]]) -> dict[str, dict[str, Any]]:
    """Each command, with --config, where the project folder is read-only; by command line."""
    cases = [[*args, "--config", str(project.config)] for args in commands]
    done = subprocess.run(
        read_only_command(project.root, [sys.executable, "-c", DRIVER, json.dumps(cases)]),
        cwd=project.root, env=project.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {" ".join(r["args"][:-2]): r for r in json.loads(done.stdout.splitlines()[-1])}


def _unexpected(results: dict[str, dict[str, Any]], expected: dict[str, int]) -> list[str]:
    return [
        f"{command}: exit {results[command]['code']}, expected {code}: {results[command]['err'][-500:]}"
        for command, code in expected.items()
        if results[command]["code"] != code or "Traceback" in results[command]["err"]
    ]


def test_read_commands_work_on_a_read_only_state_folder(project: Project) -> None:
    project.write_config(CONFIG)
    store = open_store(f"sqlite:///{project.db_path}")
    with store.write() as conn:
        apply_config(conn, load_config(project.config), NOW, "daemon")
        inbox.set_paused(conn, "ok", True, "cli:test", NOW)
    store.close()  # cleanly: no -wal or -shm is left, and none can be made on the read-only mount
    files = sorted(p.name for p in project.db_path.parent.iterdir())
    expected = {
        "history": OK, "status --json": OK, "list": OK, "next": OK, "audit --json": OK, "audit verify": OK,
        "settings": OK, "plan --no-pipelines": OK, "health": DAEMON_STATE,
        "pause ok": DAEMON_STATE, "run --no-check-pipelines": DAEMON_STATE,
        f"history --state-dir {project.root / 'nothing-here'}": OK,
    }  # fmt: skip
    results = run_read_only(project, [command.split() for command in expected])
    assert not _unexpected(results, expected)
    assert json.loads(results["status --json"]["out"])[0]["paused"] is True
    assert [e["event"] for e in json.loads(results["audit --json"]["out"])][-1] == "pause"
    assert "audit trail intact" in results["audit verify"]["out"]
    assert results["health"]["err"].startswith("unhealthy: no daemon heartbeat")
    assert "it is on a read-only file system (commands that only read it work there)" in results["pause ok"]["err"]
    assert (
        f"error: the state folder {project.db_path.parent} is not writable (Read-only file system)"
        in results["run --no-check-pipelines"]["err"]
    )
    missing = results[f"history --state-dir {project.root / 'nothing-here'}"]
    assert "note: no state database at" in missing["err"]
    assert sorted(p.name for p in project.db_path.parent.iterdir()) == files


@pytest.mark.slow
def test_health_and_status_read_beside_a_running_daemon_through_a_read_only_mount(
    project: Project, stand_in: dict[str, str]
) -> None:
    """The container health check's case: the state folder mounted read-only into the checker,
    while the daemon writes it."""
    project.write_config(CONFIG)
    daemon = project.start_daemon("--no-check-pipelines", env=stand_in)
    wait_for(lambda: project.cli("health").returncode == OK, 60, "a healthy daemon")
    expected = {"health": OK, "status": OK, "history": OK}
    results = run_read_only(project, [command.split() for command in expected])
    assert not _unexpected(results, expected)
    assert results["health"]["out"].startswith("healthy: pid")
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.output


def test_the_probe_mount_is_really_read_only(tmp_path: Path) -> None:
    done = subprocess.run(
        read_only_command(tmp_path, ["sh", "-c", f"touch {tmp_path}/x"]), capture_output=True, text=True, check=False
    )
    assert done.returncode != 0 and "Read-only file system" in done.stderr
    assert not (tmp_path / "x").exists()
