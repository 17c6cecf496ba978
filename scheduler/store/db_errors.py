"""Database errors that no retry can cure, told apart from passing ones.

A damaged SQLite file, a file that is no database, a database that became read-only, or tables
that are gone (dropped, or the database recreated empty under a running daemon) stay that way:
each becomes a StateError saying what happened and what to do, so that commands exit 3 with one
line and the daemon stops (its supervisor restarts it, and a restart runs the migrations) instead
of logging the same driver error for ever. Anything else (a lock, a lost connection) is left to
the caller, which may retry.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from scheduler.errors import StateError

# SQLite primary result codes (https://sqlite.org/rescode.html); extended codes keep them in the low byte.
SQLITE_READONLY = 8
SQLITE_CORRUPT = 11
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26
PG_UNDEFINED_TABLE = "42P01"
PG_READ_ONLY_TRANSACTION = "25006"


def sqlite_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of a driver error, if it is one."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def unusable(exc: DBAPIError, where: str) -> StateError | None:
    """The StateError for an error that makes the state database `where` unusable, else None."""
    text = first_line(exc.orig)
    code = sqlite_code(exc)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if code == SQLITE_NOTADB or "file is not a database" in text:
        return not_a_database(where, text)
    if code == SQLITE_CORRUPT or "disk image is malformed" in text or "malformed database schema" in text:
        return damaged(where, text)
    if code == SQLITE_READONLY:
        return StateError(
            f"cannot write the state database {where} ({text}): the file or its file system is read-only; "
            "give a writable --state-dir or --db-url"
        )
    if sqlstate == PG_UNDEFINED_TABLE or "no such table" in text:
        return StateError(
            f"the state database {where} has lost its tables ({text}): it was dropped, emptied or replaced "
            "while in use; a daemon started again creates them afresh (or restore a backup)"
        )
    if sqlstate == PG_READ_ONLY_TRANSACTION:
        return StateError(f"cannot write the state database {where} ({text}): it accepts read-only transactions only")
    return None


def first_line(error: BaseException | None) -> str:
    """A driver's message without the statement context PostgreSQL adds on further lines."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def foreign_database(where: str, tables: list[str]) -> StateError:
    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    return StateError(
        f"{where} is not a zenml-scheduler state database: it holds other tables ({shown}) and none of ours; "
        "point --db-url at the state database, or at a new file"
    )


def not_a_database(where: str, why: str) -> StateError:
    return StateError(
        f"{where} is not an SQLite database ({why}): if it is the state database it is damaged; restore it "
        "from a backup, or move it away and a new, empty one is made at the next start; otherwise point "
        "--db-url at the state database"
    )


def damaged(where: str, why: str) -> StateError:
    return StateError(
        f"the state database {where} is damaged ({why}): restore it from a backup, or move it away (it keeps "
        "the history and audit trail) and a new, empty one is made at the next start"
    )
