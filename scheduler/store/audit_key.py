"""The secret that keys the audit chain (HMAC-SHA256), kept in a file outside the state database.

Someone who can write the database but cannot read this file can then neither edit, append to
nor cut the chain without `audit verify` noticing. The file names the state database it belongs
to (its installation id) and the first row keyed with it, so a chain stripped of its keyed rows,
or emptied, does not pass for one that was never keyed.

The first process that appends to a chain not yet keyed makes the file: it writes
`<file>.pending-<random>`, and links it into place only once the transaction holding the first
keyed row has committed. An existing key file therefore always means that row was written. A
process that died in between leaves its pending file, which the next writer (and `audit verify`)
takes once it finds the row the file names (see `scheduler.store.audit_chain.start_problem`).

The key travels with a `Store` as an execution option of its engine (`attach`), so every writer
(ledger, inbox, lease, API, webhooks) chains with it without passing it along.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from scheduler.errors import SettingsError
from scheduler.store.engine import Store

log = logging.getLogger(__name__)

FORMAT = "zenml-scheduler audit key 1"
_PENDING = ".pending-"
_OPTION = "audit_key"


@dataclass(frozen=True)
class Binding:
    """A key file's content: the secret, the state database it keys, the first row it keys."""

    secret: bytes
    installation_id: str
    keyed_from: int

    @functools.cached_property
    def key_id(self) -> str:
        """A fingerprint that names the key in the audit trail and in messages (not the key)."""
        return self.mac(["audit-key-id"])[:16]

    def mac(self, content: list[Any]) -> str:
        return hmac.new(self.secret, json.dumps(content, separators=(",", ":")).encode(), hashlib.sha256).hexdigest()

    def head_mac(self, row_id: int, row_hash: str) -> str:
        """The head's own MAC: a row's hash alone would let anyone move the head back to that row."""
        return self.mac(["audit-head", row_id, row_hash])


class AuditKey:
    """The key file at `path`, read (or made) once per process and then kept in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.binding: Binding | None = None  # set by a writer once the chain's key is settled
        self.start_checked = False  # the row the key file names was looked at (once per process)
        self.installation_checked = False

    def read(self) -> Binding | None:
        """The key file's binding, or None when there is no key file."""
        return _read(self.path)

    def make_pending(self, installation_id: str, keyed_from: int) -> tuple[Binding, Path]:
        """A new secret for rows from `keyed_from` on, in a pending file of its own (mode 0600)."""
        binding = Binding(secrets.token_bytes(32), installation_id, keyed_from)
        content = {
            "format": FORMAT,
            "secret": binding.secret.hex(),
            "installation_id": installation_id,
            "keyed_from": keyed_from,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        pending = self.path.with_name(f"{self.path.name}{_PENDING}{secrets.token_hex(4)}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, (json.dumps(content, indent=2) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SettingsError(
                f"cannot create the audit key file {self.path}: {exc.strerror} "
                "(ZENML_SCHEDULER_AUDIT_KEY_FILE names it)"
            ) from None
        return binding, pending

    def promote(self, pending: Path) -> None:
        """Put `pending` in place (its first keyed row has committed). Never over another key
        file: that would orphan the chain it keys."""
        try:
            os.link(pending, self.path)
        except FileNotFoundError:
            return  # another writer took it already
        except FileExistsError:
            ours = _read(pending)
            if ours is None:
                return  # another writer took it already
            if _read(self.path) != ours:
                log.error("audit key file %s appeared meanwhile; this chain's key stays in %s", self.path, pending)
                return
        except OSError:  # a file system without hard links: a rename (writers of this database are serialised)
            if self.path.exists():
                return
            os.replace(pending, self.path)
        pending.unlink(missing_ok=True)
        _sync_folder(self.path.parent)
        log.info("audit key file %s created (mode 0600); keep it, and a backup, out of the database's reach", self.path)

    def own_path(self, installation_id: str) -> Path:
        """Where a state database's key lives when the configured file belongs to another one: a
        database recreated empty where an older one stood keeps the older key file untouched."""
        return self.path.with_name(f"{self.path.stem}.{installation_id}{self.path.suffix}")

    def settle_path(self, installation_id: str | None) -> None:
        """Use this database's own key file when it has one (see `own_path`)."""
        if installation_id is None:
            return
        own = self.own_path(installation_id)
        if own.exists() or any(own.parent.glob(f"{glob.escape(own.name)}{_PENDING}*")):
            self.path = own

    def recover_pending(self, committed: Callable[[Binding], bool], promote: bool = True) -> Binding | None:
        """The pending key whose first keyed row `committed`, put in place (unless `promote` is
        False, for readers); None when there is none."""
        for pending in sorted(self.path.parent.glob(f"{glob.escape(self.path.name)}{_PENDING}*")):
            try:
                binding = _read(pending)
            except SettingsError:
                continue
            if binding is not None and committed(binding):
                if promote:
                    self.promote(pending)
                return binding
        return None


def attach(store: Store, key: AuditKey) -> None:
    """Key every audit append made through `store` with `key`."""
    store.engine.update_execution_options(**{_OPTION: key})


def attached(conn: Connection) -> AuditKey | None:
    key = conn.get_execution_options().get(_OPTION)
    return key if isinstance(key, AuditKey) else None


def _read(path: Path) -> Binding | None:
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError(
            f"cannot read the audit key file {path}: {exc.strerror} (ZENML_SCHEDULER_AUDIT_KEY_FILE names it)"
        ) from None
    try:
        content = json.loads(raw)
        if not isinstance(content, dict) or content.get("format") != FORMAT:
            raise ValueError
        secret = bytes.fromhex(content["secret"])
        installation_id, keyed_from = content["installation_id"], content["keyed_from"]
        if len(secret) < 32 or not isinstance(installation_id, str) or type(keyed_from) is not int or keyed_from < 1:
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        # Never quote the file: it holds the secret.
        raise SettingsError(
            f"the audit key file {path} is not one zenml-scheduler wrote (expected {FORMAT!r} with secret, "
            "installation_id and keyed_from); restore it from a backup"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("audit key file %s is open to other users (mode %o); chmod 600 it", path, stat.S_IMODE(mode))
    return Binding(secret, installation_id, keyed_from)


def _sync_folder(folder: Path) -> None:
    """Make the new directory entry durable, like the row it belongs to."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
