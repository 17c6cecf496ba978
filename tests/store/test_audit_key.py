"""The keyed audit chain on SQLite and PostgreSQL: each tamper by someone who can write the
database but not read the key file is caught by `verify`; with a head from the log, so are a cut
tail and an emptied table on a chain without a key; older plain-hash rows keep verifying."""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Connection, delete, insert, select, update

from scheduler.errors import SettingsError, StateError
from scheduler.store import audit
from scheduler.store.audit_chain import HEAD_KEY, content, row_hash
from scheduler.store.audit_key import AuditKey, attach
from scheduler.store.engine import Store, open_store
from scheduler.store.schema import meta

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=timezone.utc)
LEGACY = 3  # rows written before the key existed
KEYED = 6  # rows appended with the key (the keyed start, row 4, comes first)


def _append(store: Store, *names: str) -> None:
    for i, name in enumerate(names):
        with store.write() as conn:
            audit.append(conn, NOW + timedelta(seconds=i), [audit.Event(name, "t", details={"i": i})])


def _verify(store: Store, heads: list[tuple[int, str]] | None = None) -> audit.VerifyResult:
    with store.read() as conn:
        return audit.verify(conn, heads or [])


def _head(store: Store) -> str:
    with store.read() as conn:
        return str(conn.execute(select(meta.c.value).where(meta.c.key == HEAD_KEY)).scalar_one())


def _set_head(conn: Connection, value: str | None) -> None:
    conn.execute(delete(meta).where(meta.c.key == HEAD_KEY))
    if value is not None:
        conn.execute(insert(meta).values(key=HEAD_KEY, value=value))


def _rechain_without_key(conn: Connection, from_id: int) -> None:
    """What someone with the source code but no key does: recompute every hash from `from_id` on
    with the plain formula, and move the head to match."""
    table = audit.audit
    rows = conn.execute(select(table).where(table.c.id >= from_id - 1).order_by(table.c.id)).all()
    prev = rows[0].hash if rows[0].id < from_id else "0" * 64
    for row in rows:
        if row.id < from_id:
            continue
        fields = content(row.id, row.at, row.event, row.job, row.run_key, row.source, row.config_revision,
                         row.details, prev)  # fmt: skip
        prev = row_hash(None, fields)
        conn.execute(update(table).where(table.c.id == row.id).values(prev_hash=fields[-1], hash=prev))
    _set_head(conn, f"{rows[-1].id}:{prev}")


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "audit-key.json"


@pytest.fixture
def keyed(db_url: str, key_file: Path) -> Iterator[Store]:
    """A chain of LEGACY plain rows (an older release's), then KEYED rows appended with a key."""
    store = open_store(db_url)
    _append(store, *[f"old-{i}" for i in range(LEGACY)])
    attach(store, AuditKey(key_file))
    _append(store, *[f"new-{i}" for i in range(KEYED - 1)])
    yield store
    store.close()


def test_older_rows_verify_as_before_and_the_keyed_guarantee_starts_after_them(keyed: Store, key_file: Path) -> None:
    result = _verify(keyed)
    assert result.ok and result.rows == LEGACY + KEYED
    assert result.guarantee == "keyed" and result.keyed_from == LEGACY + 1
    assert (result.head_id, result.key_file) == (LEGACY + KEYED, str(key_file))
    with keyed.read() as conn:
        start = audit.query(conn, limit=100)[LEGACY]
    assert start["event"] == "audit-keyed" and start["details"] == {"key_id": result.key_id}
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert json.loads(key_file.read_text())["keyed_from"] == LEGACY + 1
    assert not list(key_file.parent.glob("*.pending-*"))  # promoted once its first row committed


def test_a_chain_without_a_key_file_stays_unkeyed_and_verify_makes_no_key(db_url: str, key_file: Path) -> None:
    store = open_store(db_url)
    _append(store, "a", "b")
    attach(store, AuditKey(key_file))
    result = _verify(store)
    assert result.ok and result.guarantee == "unkeyed" and result.keyed_from is None
    assert not key_file.parent.exists()


def test_the_secret_is_never_logged(db_url: str, key_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = open_store(db_url)
    attach(store, AuditKey(key_file))
    _append(store, "a")
    secret = json.loads(key_file.read_text())["secret"]
    assert "audit key file" in caplog.text and secret not in caplog.text


def _hash_of(conn: Connection, row_id: int) -> str:
    return str(conn.execute(select(audit.audit.c.hash).where(audit.audit.c.id == row_id)).scalar_one())


def _edit_rechained(conn: Connection, row_id: int) -> None:
    conn.execute(update(audit.audit).where(audit.audit.c.id == row_id).values(details='{"i":99}'))
    _rechain_without_key(conn, row_id)


def _forge(conn: Connection) -> None:
    forged = LEGACY + KEYED + 1
    conn.execute(insert(audit.audit).values(
        id=forged, at=NOW, event="fire", job="x", run_key=None, source="scheduler", config_revision=None,
        details="{}", prev_hash="0" * 64, hash="0" * 64,
    ))  # fmt: skip
    _rechain_without_key(conn, forged)


def _cut_after(conn: Connection, row_id: int) -> None:
    conn.execute(delete(audit.audit).where(audit.audit.c.id > row_id))
    _set_head(conn, f"{row_id}:{_hash_of(conn, row_id)}")


TAMPERS: dict[str, Callable[[Connection], None]] = {
    "edit, rechained": lambda c: _edit_rechained(c, 6),  # a keyed row edited, the chain recomputed without the key
    "old edit, rechained": lambda c: _edit_rechained(c, 2),  # a row from before the key: the keyed start chains to it
    "forged event appended": _forge,
    "tail deleted, head moved": lambda c: _cut_after(c, 6),
    "keyed rows deleted, head moved": lambda c: _cut_after(c, LEGACY),
    "table emptied": lambda c: (c.execute(delete(audit.audit)), _set_head(c, None)),
    "head garbled": lambda c: _set_head(c, "garbage"),
}


FOUND = {  # tamper: (the row verify names, what it says)
    "edit, rechained": (6, "does not match its HMAC"),
    "old edit, rechained": (LEGACY + 1, "does not match its HMAC"),  # the keyed start's link to it
    "forged event appended": (LEGACY + KEYED + 1, "does not match its HMAC"),
    "tail deleted, head moved": (6, "the recorded head (row 6) is not signed with the audit key"),
    "keyed rows deleted, head moved": (LEGACY + 1, "but the chain ends at row 3: the keyed rows were deleted"),
    "table emptied": (LEGACY + 1, "but the chain ends at row 0: the keyed rows were deleted"),
    "head garbled": (None, "the recorded head 'garbage' is not valid"),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_each_tamper_without_the_key_is_detected(keyed: Store, tamper: str) -> None:
    assert _verify(keyed).ok
    with keyed.write() as conn:
        TAMPERS[tamper](conn)
    result = _verify(keyed)
    bad_id, says = FOUND[tamper]
    assert not result.ok and result.bad_id == bad_id and says in result.reason, result


def test_a_cut_tail_is_found_against_a_head_from_the_log_even_without_a_key(db_url: str) -> None:
    store = open_store(db_url)
    _append(store, "a", "b", "c", "d")
    logged = (4, _verify(store).head_hash or "")
    with store.write() as conn:  # the tail cut off and the head moved: nothing inside the database shows it
        _cut_after(conn, 2)
    assert _verify(store).ok and _verify(store).guarantee == "unkeyed"
    result = _verify(store, [logged])
    assert not result.ok and result.bad_id == 4 and "past the end of the chain" in result.reason
    with store.write() as conn:
        conn.execute(delete(audit.audit))
        _set_head(conn, None)
    assert _verify(store).ok
    assert not _verify(store, [logged]).ok


def test_a_replayed_older_head_is_found_against_a_head_from_the_log(keyed: Store) -> None:
    """Someone who kept an older copy of the head (a backup) can put it back after cutting the
    rows behind it; only a head kept outside the database shows that."""
    older = _head(keyed)
    _append(keyed, "later-1", "later-2")
    logged = (LEGACY + KEYED + 2, _verify(keyed).head_hash or "")
    with keyed.write() as conn:
        conn.execute(delete(audit.audit).where(audit.audit.c.id > LEGACY + KEYED))
        _set_head(conn, older)
    assert _verify(keyed).ok
    assert not _verify(keyed, [logged]).ok
    assert _verify(keyed, [(LEGACY + 1, _row_hash(keyed, LEGACY + 1))]).heads_checked  # an older head still holds


def test_a_rewritten_row_before_a_logged_head_is_found_against_it(db_url: str) -> None:
    store = open_store(db_url)
    _append(store, "a", "b", "c")
    logged = (3, _verify(store).head_hash or "")
    with store.write() as conn:
        conn.execute(update(audit.audit).where(audit.audit.c.id == 2).values(details='{"i":7}'))
        _rechain_without_key(conn, 2)
    assert _verify(store).ok  # unkeyed: a rewrite passes on its own
    result = _verify(store, [logged])
    assert not result.ok and "hash differs" in result.reason


def _row_hash(store: Store, row_id: int) -> str:
    with store.read() as conn:
        return str(conn.execute(select(audit.audit.c.hash).where(audit.audit.c.id == row_id)).scalar_one())


def test_a_garbled_head_is_recorded_and_the_chain_goes_on(keyed: Store, caplog: pytest.LogCaptureFixture) -> None:
    last = LEGACY + KEYED
    last_hash = _row_hash(keyed, last)
    with keyed.write() as conn:
        _set_head(conn, "99:not-a-head")
    assert "is not valid" in _verify(keyed).reason
    _append(keyed, "after")  # what the daemon's first write at start does
    with keyed.read() as conn:
        events = audit.query(conn, limit=3)
    assert [e["event"] for e in events[-2:]] == ["audit-head-invalid", "after"]
    assert events[-2]["details"]["continued_from"] == last and "not valid" in events[-2]["details"]["reason"]
    assert "audit trail: the recorded head '99:not-a-head' is not valid" in caplog.text
    result = _verify(keyed)
    assert not result.ok and result.bad_id == last + 1 and "cannot be ruled out" in result.reason
    # the head the log showed last before the incident proves nothing was cut off before it
    assert _verify(keyed, [(last, last_hash)]).ok


def test_a_head_behind_the_last_row_does_not_stop_writers(db_url: str) -> None:
    """A head moved back without deleting rows used to make every append collide with an existing id."""
    store = open_store(db_url)
    _append(store, "a", "b", "c")
    with store.write() as conn:
        _set_head(conn, f"1:{_hash_of(conn, 1)}")
    _append(store, "d")
    with store.read() as conn:
        assert [e["event"] for e in audit.query(conn)] == ["a", "b", "c", "audit-head-invalid", "d"]


def test_writers_refuse_a_keyed_chain_without_its_key(keyed: Store, key_file: Path, tmp_path: Path) -> None:
    other_store = open_store(keyed.url)
    with pytest.raises(StateError, match="given no audit key file"), other_store.write() as conn:
        audit.append(conn, NOW, [audit.Event("x", "t")])
    attach(other_store, AuditKey(tmp_path / "elsewhere.json"))
    with pytest.raises(StateError, match="does not exist; restore it from a backup"), other_store.write() as conn:
        audit.append(conn, NOW, [audit.Event("x", "t")])
    other_store.close()
    result = _verify_with(keyed.url, tmp_path / "elsewhere.json")
    assert not result.ok and result.bad_id == LEGACY + 1 and "no audit key file" in result.reason


def test_a_key_file_of_another_database_is_refused(keyed: Store, key_file: Path, tmp_path: Path) -> None:
    """A database with a chain of its own, pointed at another database's key file."""
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    _append(other, "its-own-history")
    attach(other, AuditKey(key_file))
    with pytest.raises(StateError, match="belongs to another state database"), other.write() as conn:
        audit.append(conn, NOW, [audit.Event("x", "t")])
    with other.read() as conn:
        assert "belongs to another state database" in audit.verify(conn).reason
    other.close()


def test_a_new_empty_database_beside_another_ones_key_gets_its_own(
    keyed: Store, key_file: Path, tmp_path: Path
) -> None:
    """A state database dropped and recreated empty (a supervisor restarts the daemon, migrations
    run) starts a keyed chain of its own; the old key file stays untouched for the old chain."""
    before = key_file.read_bytes()
    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}")
    attach(fresh, AuditKey(key_file))
    _append(fresh, "first", "second")
    assert key_file.read_bytes() == before
    own = list(key_file.parent.glob("audit-key.*.json"))
    assert len(own) == 1 and stat.S_IMODE(own[0].stat().st_mode) == 0o600
    assert _verify_with(fresh.url, key_file).keyed_from == 1  # a later process finds its own key
    _append(keyed, "old-database-still-works")
    assert _verify(keyed).ok
    fresh.close()


def test_a_key_file_that_is_not_one_is_a_settings_error(keyed: Store, key_file: Path) -> None:
    key_file.write_text("0" * 64)
    with pytest.raises(SettingsError, match="is not one zenml-scheduler wrote") as raised:
        _verify_with(keyed.url, key_file)
    assert "0" * 64 not in str(raised.value)


def test_a_key_whose_writer_died_before_putting_it_in_place_is_taken(keyed: Store, key_file: Path) -> None:
    key_file.rename(key_file.with_name(key_file.name + ".pending-dead"))  # what a crash after the commit leaves
    assert _verify_with(keyed.url, key_file).keyed_from == LEGACY + 1
    store = open_store(keyed.url)
    attach(store, AuditKey(key_file))
    _append(store, "after")
    assert key_file.exists() and _verify(store).ok and _verify(store).keyed_from == LEGACY + 1
    store.close()


def test_a_rolled_back_first_keyed_write_leaves_no_key(db_url: str, key_file: Path) -> None:
    store = open_store(db_url)
    attach(store, AuditKey(key_file))
    with pytest.raises(RuntimeError), store.write() as conn:
        audit.append(conn, NOW, [audit.Event("a", "t")])
        raise RuntimeError("the transaction fails after the append")
    assert not key_file.exists()
    _append(store, "b")
    result = _verify(store)
    assert result.ok and result.keyed_from == 1 and result.rows == 2
    assert result.key_id == _key_id_of_row(store, 1)
    store.close()


def _key_id_of_row(store: Store, row_id: int) -> str:
    with store.read() as conn:
        return str(json.loads(
            conn.execute(select(audit.audit.c.details).where(audit.audit.c.id == row_id)).scalar_one()
        )["key_id"])  # fmt: skip


def _verify_with(url: str, key_file: Path) -> audit.VerifyResult:
    store = open_store(url)
    attach(store, AuditKey(key_file))
    try:
        return _verify(store)
    finally:
        store.close()


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_writers_go_on_after_a_tamper_and_it_stays_on_the_record(keyed: Store, key_file: Path, tamper: str) -> None:
    """The next daemon (a new process: a new key object) starts and writes; verify still fails."""
    with keyed.write() as conn:
        TAMPERS[tamper](conn)
    store = open_store(keyed.url)
    attach(store, AuditKey(key_file))
    _append(store, "daemon-started")
    with store.read() as conn:
        events = [e["event"] for e in audit.query(conn, limit=3)]
    assert events[-2:] == ["audit-head-invalid", "daemon-started"], tamper
    assert not _verify(store).ok
    store.close()


def test_a_key_file_that_cannot_be_made_is_a_settings_error(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    store = open_store(db_url)
    attach(store, AuditKey(tmp_path / "a-file" / "audit-key.json"))
    with pytest.raises(SettingsError, match=r"key file .*a-file/audit-key.json: Not a directory \(ZENML_SCHEDULER"):
        _append(store, "a")
    attach(store, AuditKey(Path("/proc/self/no-such-folder/audit-key.json")))  # a folder that cannot be made
    with pytest.raises(SettingsError, match=r"cannot create the audit key file .*ZENML_SCHEDULER_AUDIT_KEY_FILE"):
        _append(store, "a")
    store.close()
