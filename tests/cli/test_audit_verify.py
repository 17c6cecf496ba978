"""`audit verify` as a user meets it: which guarantee holds, heads from the log, a damaged
SQLite file (a message and an exit code, never a traceback), and a real daemon that logs its head
and starts despite a garbled one."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from scheduler.cli.exit_codes import DAEMON_STATE, FAILURE, INVALID, OK
from scheduler.cli.main import main
from scheduler.store import audit
from scheduler.store.audit_chain import HEAD_KEY
from scheduler.store.audit_key import AuditKey, attach
from scheduler.store.engine import open_store
from scheduler.store.schema import meta
from tests.harness import Project, wait_for

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=timezone.utc)


class Cli:
    """The console entry point in this process, on one state directory (and database URL)."""

    def __init__(
        self, state_dir: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.state_dir, self.db_url = state_dir, db_url
        self.monkeypatch, self.capsys = monkeypatch, capsys
        monkeypatch.chdir(state_dir.parent)

    def __call__(self, *args: str) -> tuple[int, str, str]:
        where = ["--state-dir", str(self.state_dir), "--db-url", self.db_url]
        self.monkeypatch.setattr(sys, "argv", ["zenml-scheduler", "audit", "verify", *args, *where])
        with pytest.raises(SystemExit) as ended:
            main()
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err, err
        return ended.value.code or 0, out, err

    def append(self, count: int, keyed: bool = True) -> None:
        store = open_store(self.db_url)
        if keyed:
            attach(store, AuditKey(self.state_dir / "audit-key.json"))
        for i in range(count):  # rows of some size, so that the table spans pages
            event = audit.Event("fire", "scheduler", "job", details={"i": i, "pad": "x" * 300})
            with store.write() as conn:
                audit.append(conn, NOW + timedelta(seconds=i), [event])
        store.close()


@pytest.fixture
def cli(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    for name in ("ZENML_SCHEDULER_AUDIT_KEY_FILE", "ZENML_SCHEDULER_DB_URL", "ZENML_SCHEDULER_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return Cli(tmp_path / "state", db_url, monkeypatch, capsys)


def test_verify_says_which_guarantee_holds_and_from_which_row(cli: Cli) -> None:
    cli.append(2, keyed=False)  # rows of an older release
    code, out, _ = cli()
    assert code == OK and "audit trail intact: 2 rows, head 2:" in out
    assert "guarantee: unkeyed (hash chain only)" in out
    assert not (cli.state_dir / "audit-key.json").exists()  # verify makes no key
    cli.append(3)
    code, out, _ = cli("--json")
    report = json.loads(out)
    assert code == OK and report["ok"] is True and report["rows"] == 6
    assert report["guarantee"] == "keyed" and report["keyed_from"] == 3
    assert report["key_file"] == str((cli.state_dir / "audit-key.json").resolve())
    assert re.fullmatch(r"6:[0-9a-f]{64}", report["head"])
    assert report["integrity"] == ("ok" if cli.db_url.startswith("sqlite") else None)
    code, out, _ = cli()
    assert "guarantee: keyed (HMAC) from row 3 (rows 1..2, older, chain into it)" in out
    code, out, _ = cli("--head", report["head"], "--head", report["head"].replace("6:", "1:", 1))
    assert code == FAILURE  # row 1 has another hash
    code, out, _ = cli("--head", report["head"])
    assert code == OK and f"external head {report['head']}: in the chain" in out
    assert cli("--head", "6-abc")[0] == INVALID


def test_a_keyed_chain_rewritten_or_cut_does_not_verify(cli: Cli) -> None:
    cli.append(4)
    head = json.loads(cli("--json")[1])["head"]
    store = open_store(cli.db_url)
    with store.write() as conn:
        conn.execute(update(audit.audit).where(audit.audit.c.id == 3).values(details="{}"))
    code, _, err = cli()
    assert code == FAILURE and "audit trail does not verify at row 3: content does not match its HMAC" in err
    with store.write() as conn:  # cut it back to one row; a head of row 1 is even signed
        conn.execute(delete(audit.audit).where(audit.audit.c.id > 1))
        conn.execute(delete(meta).where(meta.c.key == HEAD_KEY))
    store.close()
    assert cli()[0] == FAILURE
    code, _, err = cli("--head", head)
    assert code == FAILURE and "is past the end of the chain (row 1)" in err


def _database(cli: Cli) -> tuple[Path, int, dict[str, int]]:
    """The SQLite file with everything in it (no WAL), its page size and each object's root page."""
    path = Path(cli.db_url.removeprefix("sqlite:///"))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0").fetchall())
    conn.close()
    return path, page_size, roots


def _overwrite_page(path: Path, page_size: int, page: int) -> None:
    with open(path, "r+b") as file:
        file.seek((page - 1) * page_size)
        file.write(bytes((i * 37 + 11) % 256 for i in range(page_size)))


@pytest.mark.parametrize("damaged", ["ix_audit_job", "audit", "runs"])
def test_a_damaged_page_is_a_trail_that_cannot_be_verified(cli: Cli, damaged: str) -> None:
    if not cli.db_url.startswith("sqlite"):
        pytest.skip("a page of a SQLite file")
    cli.append(60)
    assert cli()[0] == OK
    path, page_size, roots = _database(cli)
    _overwrite_page(path, page_size, roots[damaged])
    code, out, err = cli()
    assert code == FAILURE and out == ""
    assert "audit trail does not verify: the state database file is damaged" in err
    code, out, _ = cli("--json")
    assert code == FAILURE and json.loads(out)["integrity"] == "damaged"


def test_a_file_that_is_not_a_database_is_an_unusable_state_database(cli: Cli) -> None:
    if not cli.db_url.startswith("sqlite"):
        pytest.skip("a SQLite file")
    cli.append(3)
    path, page_size, _ = _database(cli)
    _overwrite_page(path, page_size, 1)
    code, _, err = cli()
    assert code == DAEMON_STATE and "is not an SQLite database" in err


STAND_IN_CONFIG = "version: 1\njobs:\n  ok: {pipeline: fake.pipe:line, cron: '0 0 1 1 *', parameters: {mode: ok}}\n"


def _logged_heads(output: str) -> list[dict[str, object]]:
    heads = []
    for line in output.splitlines():
        if line.startswith("{") and '"audit_head"' in line:
            entry = json.loads(line)
            assert entry["msg"] == f"audit head id={entry['audit_head']['id']} hash={entry['audit_head']['hash']}"
            heads.append(entry["audit_head"])
    return heads


@pytest.mark.slow
def test_a_daemon_logs_its_head_and_starts_despite_a_garbled_one(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(STAND_IN_CONFIG)
    project.env.update(stand_in)
    daemon = project.start_daemon("--no-check-pipelines")
    wait_for(lambda: project.cli("health").returncode == OK, 60, "a healthy daemon")
    assert project.cli("trigger", "ok", "--wait").returncode == OK
    assert daemon.stop() == 0
    heads = _logged_heads(daemon.output)
    assert [h["when"] for h in (heads[0], heads[-1])] == ["start", "stop"]
    stop_head = f"{heads[-1]['id']}:{heads[-1]['hash']}"
    key_file = project.root / ".zenml-scheduler" / "audit-key.json"
    assert json.loads(key_file.read_text())["secret"] not in daemon.output
    verify = project.cli("audit", "verify", "--head", stop_head, "--json")
    report = json.loads(verify.stdout)
    assert verify.returncode == OK and report["guarantee"] == "keyed" and report["keyed_from"] == 1
    assert report["head"] == stop_head and report["heads_checked"] == [stop_head]

    with sqlite3.connect(project.db_path) as conn:  # garbled: this used to stop every start
        conn.execute("UPDATE meta SET value = 'x:y:z' WHERE key = 'audit_head'")
    garbled = project.cli("audit", "verify")
    assert garbled.returncode == FAILURE and "the recorded head 'x:y:z' is not valid" in garbled.stderr
    again = project.start_daemon("--no-check-pipelines")
    wait_for(lambda: project.cli("health").returncode == OK, 60, "a daemon started despite the garbled head")
    assert again.stop() == 0
    assert "the recorded head 'x:y:z' is not valid" in again.output
    incident = project.query("SELECT id, details FROM audit WHERE event = 'audit-head-invalid'")
    assert len(incident) == 1 and json.loads(incident[0]["details"])["continued_from"] == heads[-1]["id"]
    after = project.cli("audit", "verify")
    assert after.returncode == FAILURE and f"at row {incident[0]['id']}" in after.stderr
    assert project.cli("audit", "verify", "--head", stop_head).returncode == OK  # nothing was cut before it

    last = _logged_heads(again.output)[-1]
    with sqlite3.connect(project.db_path) as conn:  # the tail cut off and the head moved back by hand
        conn.execute("DELETE FROM audit WHERE id > ?", (heads[-1]["id"],))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (stop_head,))
    assert project.cli("audit", "verify").returncode == FAILURE  # keyed: the head carries no MAC
    cut = project.cli("audit", "verify", "--head", f"{last['id']}:{last['hash']}")
    assert cut.returncode == FAILURE and "past the end of the chain" in cut.stderr
