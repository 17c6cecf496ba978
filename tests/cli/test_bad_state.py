"""A bad setting or an unusable state database, as a user meets them through the console entry
point: one line saying what is wrong and what to do, the documented exit code, no traceback, and
nothing created or changed. In this process (see test_exit_codes.py), on real files."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scheduler.cli.exit_codes import DAEMON_STATE, INVALID, OK
from scheduler.cli.main import main
from tests.harness import Project
from tests.store.test_opening import corrupt_pages_after_the_first, corrupt_table, overwrite_with_garbage, state_db

CONFIG = "version: 1\njobs:\n  ok: {pipeline: fake.pipe:line, cron: '0 0 1 1 *', parameters: {mode: ok}}\n"
# Every command that opens the state database, reading or writing.
OPENING = [
    ["run", "--no-check-pipelines"], ["history"], ["status"], ["list"], ["health"], ["audit"], ["audit", "verify"],
    ["plan", "--no-pipelines"], ["pause", "ok"], ["trigger", "ok"],
]  # fmt: skip


@pytest.fixture
def cli(project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable]:
    """cli(args, env) -> (exit code, stderr), through `main()` in this process."""
    project.write_config(CONFIG)
    monkeypatch.chdir(project.root)
    for name, value in project.env.items():
        if name.startswith(("ZENML_", "PYTHONPATH")):
            monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # `run` sets up the daemon's logging

    def call(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        with monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            patch.setattr(sys, "argv", ["zenml-scheduler", *args, "--config", str(project.config)])
            with pytest.raises(SystemExit) as ended:
                main()
        return ended.value.code or 0, capsys.readouterr().err

    yield call
    root.handlers[:], root.level = handlers, level


def _one_line_error(err: str) -> bool:
    lines = [line for line in err.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err


def test_read_commands_on_a_database_not_made_yet_create_nothing(project: Project, cli: Callable) -> None:
    state_dir = project.root / ".zenml-scheduler"
    cases = [
        (["history"], OK), (["status"], OK), (["list"], OK), (["audit"], OK), (["audit", "verify"], OK),
        (["plan", "--no-pipelines"], OK), (["next"], OK), (["settings"], OK), (["health"], DAEMON_STATE),
        (["trigger", "ok"], DAEMON_STATE), (["reload"], DAEMON_STATE),
    ]  # fmt: skip
    wrong = []
    for args, expected in cases:
        code, err = cli(args)
        if code != expected or "Traceback" in err or state_dir.exists():
            wrong.append(f"{' '.join(args)}: exit {code}, expected {expected}, created: {state_dir.exists()}: {err}")
    assert not wrong, "\n".join(wrong)
    code, err = cli(["history"])
    assert f"note: no state database at {state_dir / 'state.db'} yet" in err


BAD_SETTINGS = [
    # (what, extra args, environment, .env bytes, commands, exit code, the message says)
    ("an unparseable URL", ["--db-url", "garbage"], {}, None, ["history", "run", "settings"], INVALID,
     "'garbage' is not a database URL; accepted: sqlite:///PATH (a file) or postgresql+psycopg://"),
    ("a URL without database", ["--db-url", "postgresql://"], {}, None, ["history", "run"], INVALID,
     "postgresql:// names no database; write postgresql+psycopg://USER@HOST[:PORT]/DATABASE"),
    ("an engine not supported", ["--db-url", "mysql://me:pw@db.example/state"], {}, None,
     ["history", "run", "settings"], INVALID, "the 'mysql' database engine is not supported; accepted: sqlite:///PATH"),
    ("a file URL", ["--db-url", "file:///var/lib/state.db"], {}, None, ["status", "run"], INVALID,
     "file:// URLs are not database URLs; for an SQLite file write sqlite:///PATH"),
    ("a file that is no database", ["--db-url", "sqlite:////etc/passwd"], {}, None, ["history", "run", "pause"],
     DAEMON_STATE, "/etc/passwd is not an SQLite database (it does not begin with the SQLite header)"),
    ("an interpreter that does not exist", ["--python", "/nonexistent/python"], {}, None, ["run"], INVALID,
     "invalid setting python (--python / ZENML_SCHEDULER_PYTHON): /nonexistent/python does not exist"),
    ("API keys that are not JSON", [], {"ZENML_SCHEDULER_API_KEYS": "not json"}, None, ["history", "run"], INVALID,
     "invalid setting api_keys (ZENML_SCHEDULER_API_KEYS): not valid JSON (Expecting value: line 1 column 1"),
    ("a .env file that is not UTF-8", [], {}, b"ZENML_SCHEDULER_LOG_LEVEL=INFO\nZENML_SCHEDULER_LEASE_TTL=5\xe9\n",
     ["history", "run"], INVALID, "is not UTF-8 text: byte 0xe9 on line 2; save it as UTF-8"),
]  # fmt: skip


def test_bad_settings_are_one_line_each_and_create_nothing(project: Project, cli: Callable) -> None:
    passwd = Path("/etc/passwd")
    passwd_before = (hashlib.sha256(passwd.read_bytes()).hexdigest(), passwd.stat().st_mtime_ns)
    wrong = []
    for what, extra, env, dotenv, commands, expected, says in BAD_SETTINGS:
        env_file = project.root / ".env"
        if dotenv is not None:
            env_file.write_bytes(dotenv)
        for command in commands:
            args = {"run": ["run", "--no-check-pipelines"], "pause": ["pause", "ok"]}.get(command, [command])
            code, err = cli([*args, *extra], env)
            created = sorted(p.name for p in project.root.iterdir() if p.name not in ("schedules.yaml", "tinypipes"))
            if code != expected or not _one_line_error(err) or says not in err or created not in ([], [".env"]):
                wrong.append(f"{what} ({command}): exit {code}, expected {expected}, left {created}: {err!r}")
            if "pw@" in err:
                wrong.append(f"{what} ({command}): the password is shown: {err!r}")
        env_file.unlink(missing_ok=True)
    assert not wrong, "\n".join(wrong)
    assert (hashlib.sha256(passwd.read_bytes()).hexdigest(), passwd.stat().st_mtime_ns) == passwd_before
    assert not Path("/etc/passwd-wal").exists() and not Path("/etc/passwd-shm").exists()


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (overwrite_with_garbage, "is not an SQLite database (it does not begin with the SQLite header)"),
        (corrupt_pages_after_the_first, "is damaged (database disk image is malformed)"),
    ],
    ids=["garbage", "damaged-pages"],
)
def test_an_unusable_database_is_exit_3_with_what_to_do(project: Project, cli: Callable, damage, says: str) -> None:
    path = state_db(project.root / ".zenml-scheduler" / "state.db")
    damage(path)
    before = path.read_bytes()
    wrong = []
    for args in OPENING:
        code, err = cli(args)
        named = str(path) in err and "restore it from a backup, or move it away" in err
        if code != DAEMON_STATE or not _one_line_error(err) or says not in err or not named:
            wrong.append(f"{' '.join(args)}: exit {code}, expected {DAEMON_STATE}: {err!r}")
    assert not wrong, "\n".join(wrong)
    assert path.read_bytes() == before


def test_a_damaged_table_is_exit_3_at_the_first_query(project: Project, cli: Callable) -> None:
    path = state_db(project.root / ".zenml-scheduler" / "state.db")
    corrupt_table(path, "runs")
    code, err = cli(["history"])
    assert code == DAEMON_STATE and _one_line_error(err), err
    assert f"the state database {path} is damaged (database disk image is malformed)" in err
    assert cli(["audit"])[0] == OK  # the other tables still read


def test_another_programs_sqlite_file_is_left_alone(project: Project, cli: Callable, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    other = tmp_path / "elsewhere" / "app.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    for args in (["history"], ["run", "--no-check-pipelines"], ["pause", "ok"]):
        code, err = cli([*args, "--db-url", f"sqlite:///{other}"])
        assert code == DAEMON_STATE and _one_line_error(err), err
        assert "is not a zenml-scheduler state database: it holds other tables (orders)" in err
    assert other.read_bytes() == before
    assert os.listdir(other.parent) == ["app.db"]
