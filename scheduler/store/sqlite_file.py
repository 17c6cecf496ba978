"""An SQLite state database file as the file system has it, looked at before SQLite opens it.

A file that is not an SQLite database (`sqlite:////etc/passwd`) is refused by its header before
SQLite, with its connection settings, gets to open it at all. And a WAL database on a read-only
file system can only be read as immutable, because SQLite cannot create its `-shm` there.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from urllib.parse import quote

from scheduler.errors import StateError
from scheduler.store.db_errors import foreign_database, not_a_database

HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def has_database(path: Path) -> bool:
    """True when `path` holds an SQLite database, False when nothing (or an empty file) is there
    yet; StateError when something else is."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateError(f"cannot open state database {path}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise StateError(
            f"the state database {path} is a folder; --db-url names the database file, e.g. sqlite:///{path}/state.db"
        )
    if not stat.S_ISREG(info.st_mode):
        raise StateError(f"the state database {path} is not a regular file")
    if info.st_size == 0:
        return False
    try:
        with open(path, "rb") as file:
            start = file.read(len(HEADER))
    except OSError as exc:
        raise StateError(f"cannot read state database {path}: {exc.strerror}") from None
    if start != HEADER:
        raise not_a_database(str(path), "it does not begin with the SQLite header")
    return True


def refuse_foreign(path: Path) -> None:
    """StateError when the SQLite database at `path` belongs to another program (tables, none of
    ours), found out read-only: a writer's connection would already switch it to WAL mode."""
    try:
        conn = sqlite3.connect(reader_uri(path), uri=True, timeout=30)
    except sqlite3.Error:
        return
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
    except sqlite3.Error:
        return  # damaged, or unreadable without writing: opening it for writing says what is wrong
    finally:
        conn.close()
    if tables and "meta" not in tables:
        raise foreign_database(str(path), tables)


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def shm_path(path: Path) -> Path:
    return path.with_name(path.name + "-shm")


def reader_uri(path: Path, immutable: bool = False) -> str:
    """The URI SQLite opens `path` with for reading only (`immutable`: without locks or `-shm`)."""
    return f"file:{quote(str(path.absolute()))}?mode=ro" + ("&immutable=1" if immutable else "")


def readable_only_as_immutable(path: Path) -> bool:
    """Whether `path` must be opened immutable: its folder cannot be written, so SQLite cannot
    create the `-shm` a WAL database is read through, and no process has one open (no `-shm`)
    so nothing changes it meanwhile. StateError when a write-ahead log holds changes that only a
    writer can fold in."""
    if os.access(path.parent, os.W_OK) or shm_path(path).exists():
        return False
    wal = wal_path(path)
    if wal.exists() and wal.stat().st_size > 0:
        raise StateError(
            f"cannot read the state database {path} on this read-only file system: its write-ahead log "
            f"{wal} holds changes that only a writer can apply; open it once where it is writable"
        )
    return True


def on_read_only_file_system(path: Path) -> bool:
    """Whether the folder of `path` is on a file system mounted read-only."""
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False
