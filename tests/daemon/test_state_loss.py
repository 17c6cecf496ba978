"""The daemon and a state database that goes away under it, or a stop that comes early: real
daemon processes, real signals, a real PostgreSQL schema dropped and recreated empty."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from scheduler.cli.exit_codes import DAEMON_STATE, OK
from tests.conftest import PG_URL
from tests.harness import Project, wait_for

CONFIG = "version: 1\njobs:\n  ok: {pipeline: fake.pipe:line, cron: '0 0 1 1 *', parameters: {mode: ok}}\n"
LOST = "has lost its tables"


def tables(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return inspect(conn).get_table_names()
    finally:
        engine.dispose()


def drop_everything(db_url: str) -> None:
    """What an operator's `DROP SCHEMA ... CASCADE; CREATE SCHEMA ...` (or a restored empty
    database) does under the daemon; on SQLite, every table dropped from the same file."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=30)
        with conn:
            for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall():
                conn.execute(f'DROP TABLE "{name}"')
        conn.close()
        return
    schema = re.search(r"search_path%3D(\w+)", db_url).group(1)  # type: ignore[union-attr]
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()


@pytest.mark.slow
def test_a_daemon_whose_tables_are_dropped_stops_with_3_once(
    project: Project, stand_in: dict[str, str], db_url: str
) -> None:
    project.write_config(CONFIG)
    args = ("--no-check-pipelines", "--db-url", db_url, "--lease-ttl", "3s")
    daemon = project.start_daemon(*args, env=stand_in)
    wait_for(lambda: project.cli("health", "--db-url", db_url).returncode == OK, 60, "a healthy daemon")
    drop_everything(db_url)
    assert daemon.process.wait(timeout=30) == DAEMON_STATE
    output = daemon.output
    assert "Traceback" not in output
    said = [line for line in output.splitlines() if LOST in line]
    # Once in the log, once as the command's error line; not once per retry.
    assert len(said) == 2, said
    assert said[-1].startswith("error: the state database ") and "a daemon started again creates them" in said[-1]
    assert "could not give the lease back" not in output
    assert tables(db_url) == []  # nothing was recreated under the operator's feet
    # A supervisor's restart runs the migrations on the empty database and carries on.
    again = project.start_daemon(*args, env=stand_in)
    wait_for(lambda: project.cli("health", "--db-url", db_url).returncode == OK, 60, "the restarted daemon")
    assert "lease" in tables(db_url)
    assert again.stop() == OK
    assert "Traceback" not in again.output


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_during_start_up_exits_0_without_a_traceback(project: Project, tmp_path: Path, sig: int) -> None:
    """The pipeline check at start can take minutes; a stop then ends it, and the checker."""
    pid_file = tmp_path / "checker.pid"
    hangs = tmp_path / "hanging-python"
    hangs.write_text(f"#!{sys.executable}\nimport os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                     "time.sleep(120)\n")  # fmt: skip
    hangs.chmod(0o755)
    project.write_config(CONFIG)
    daemon = project.start_daemon(env={"ZENML_SCHEDULER_PYTHON": str(hangs)})
    checker = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the pipeline check"))
    assert daemon.stop(sig, timeout=20) == OK
    assert "Traceback" not in daemon.output
    assert f"zenml-scheduler: stopped ({signal.Signals(sig).name})" in daemon.output
    with pytest.raises(ProcessLookupError):
        os.kill(checker, 0)


@pytest.mark.slow
def test_sigterm_while_the_database_is_away_exits_0_without_a_traceback(
    project: Project, stand_in: dict[str, str], db_url: str
) -> None:
    """The daemon connects as a role of its own; that role is then locked out and its sessions
    ended, so every transaction fails (the lease cannot be given back either) until SIGTERM."""
    if db_url.startswith("sqlite"):
        pytest.skip("a database server that goes away is a PostgreSQL case")
    schema = re.search(r"search_path%3D(\w+)", db_url).group(1)  # type: ignore[union-attr]
    role = f"r_{schema}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT ALL ON SCHEMA {schema} TO {role}"))
    try:
        url = db_url.replace("postgres@", f"{role}@", 1)
        project.write_config(CONFIG)
        daemon = project.start_daemon("--no-check-pipelines", "--db-url", url, "--lease-ttl", "3s", env=stand_in)
        wait_for(lambda: project.cli("health", "--db-url", url).returncode == OK, 60, "a healthy daemon")
        with admin.connect() as conn:
            conn.execute(text(f"ALTER ROLE {role} NOLOGIN"))
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"))
        wait_for(lambda: "state database error, retrying" in daemon.output, 30, "the daemon to meet the outage")
        assert daemon.stop(timeout=30) == OK
        assert "Traceback" not in daemon.output
        assert "could not give the lease back (it lapses after 3s)" in daemon.output
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()
