"""API keys: creation, hashed storage and constant-time lookup.

A key is 256 random bits (`zsk_` + 43 URL-safe characters), shown once when created. Only its
SHA-256 is stored: for a random key of that length a slow password hash adds nothing, and a
fast one keeps every request cheap. Keys come from the `api_keys` setting and from the key
file that `zenml-scheduler api-key create` writes; the file is re-read when it changes, so a
new or revoked key takes effect without a restart.

Scopes nest: `admin` includes `trigger`, which includes `read`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from scheduler.config.stored_keys import Scope, StoredKey
from scheduler.errors import SettingsError
from scheduler.timing.clock import utcnow

KEY_PREFIX = "zsk_"
HASH_PREFIX = "sha256:"


def hash_key(key: str) -> str:
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def read_key_file(path: Path) -> list[StoredKey]:
    """The keys in `path` ([] when it does not exist); SettingsError when it is unreadable or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SettingsError(f"cannot read API key file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
        return [StoredKey.model_validate(entry) for entry in data.get("keys", [])]
    except (ValueError, AttributeError, ValidationError) as exc:
        raise SettingsError(f"API key file {path} is not valid: {exc}") from None


def write_key_file(path: Path, keys: Sequence[StoredKey]) -> None:
    """Replace the key file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"keys": [k.model_dump(exclude_none=True) for k in keys]}, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def create_key(path: Path, name: str, scopes: Sequence[Scope]) -> str:
    """Add a key named `name` to the key file and return the key itself (it is not stored)."""
    keys = read_key_file(path)
    if any(k.name == name for k in keys):
        raise SettingsError(f"an API key named {name!r} already exists in {path}; revoke it first")
    key = new_key()
    created = utcnow().isoformat(timespec="seconds")
    try:
        entry = StoredKey(name=name, scopes=tuple(scopes), hash=hash_key(key), created_at=created)
    except ValidationError as exc:
        raise SettingsError(f"invalid API key: {exc.errors()[0]['msg']}") from None
    write_key_file(path, [*keys, entry])
    return key


def revoke_key(path: Path, name: str) -> bool:
    keys = read_key_file(path)
    kept = [k for k in keys if k.name != name]
    if len(kept) == len(keys):
        return False
    write_key_file(path, kept)
    return True


class KeyRing:
    """The keys the API accepts: from settings, plus the key file (re-read when it changes)."""

    def __init__(self, configured: Sequence[StoredKey], path: Path | None) -> None:
        self.configured = list(configured)
        self.path = path
        self._file_keys: list[StoredKey] = []
        self._file_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the key file if its size or mtime changed; keep the last good keys on errors."""
        if self.path is None:
            return
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._file_stamp:
            return
        with self._lock:
            self._file_keys = read_key_file(self.path) if stamp is not None else []
            self._file_stamp = stamp

    @property
    def keys(self) -> list[StoredKey]:
        return self.configured + self._file_keys

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, presented: str) -> StoredKey | None:
        """The key whose hash matches; every stored hash is compared, in constant time each."""
        candidate = hash_key(presented)
        found = None
        for key in self.keys:
            if hmac.compare_digest(candidate, key.hash):
                found = key
        return found
