"""Every run key and ZenML run name format, in one place (pure).

A run key names one slot, file, batch or request for good: the same event always gets the same
key, and the unique (run_key, attempt) constraint turns a second fire of it into a recorded
duplicate instead of a second run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Protocol


class KeyedFile(Protocol):
    """What a file's run key is made of (`scheduler.policy.file_runs.FileSeen` is one)."""

    @property
    def rel(self) -> str: ...

    @property
    def identity(self) -> str: ...


def utc_iso(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_run_key(job: str, slot: datetime) -> str:
    """The run key of a scheduled slot: the same slot always gets the same key."""
    return f"{job}@{utc_iso(slot)}"


def manual_run_key(job: str, requested_at: datetime, nonce: str) -> str:
    return f"{job}@manual:{utc_iso(requested_at)}#{nonce}"


def zenml_run_name(job: str, run_key: str, attempt: int, when: datetime, installation: str) -> str:
    """A readable ZenML run name, unique per launch. ZenML run names are unique per ZenML project,
    and several state databases (dev and prod, two teams) may share one ZenML store and job names:
    the suffix digests the state database's installation id with the run key and attempt."""
    suffix = hashlib.sha256(f"{installation}#{run_key}#{attempt}".encode()).hexdigest()[:10]
    return f"{job}-{when.astimezone(timezone.utc):%Y%m%d-%H%M%S}-{suffix}"


MAX_KEY = 400  # the run_key column's width


def file_run_key(job: str, files: tuple[KeyedFile, ...]) -> str:
    """`<job>@file:<relative path>#<identity>`; a batch keys on its files' sorted identities."""
    if len(files) == 1:
        seen = files[0]
        key = f"{job}@file:{seen.rel}#{seen.identity}"
        if len(key) <= MAX_KEY:
            return key
        digest = hashlib.sha256(seen.rel.encode()).hexdigest()[:16]
        return f"{job}@file:{seen.rel[: MAX_KEY - len(job) - 60]}...{digest}#{seen.identity}"
    members = "\n".join(sorted(f"{seen.rel}#{seen.identity}" for seen in files))
    return f"{job}@files:{len(files)}#{hashlib.sha256(members.encode()).hexdigest()[:16]}"


def after_run_key(job: str, upstream_id: str) -> str:
    """`<job>@after:<upstream id>`: the run of an after job for one upstream run. The id is the
    upstream's ZenML run id, or (when it has none, e.g. it failed before reaching ZenML) our run
    key with ``#<attempt>``; an id too long for the column keeps its start and a digest of it all."""
    key = f"{job}@after:{upstream_id}"
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(upstream_id.encode()).hexdigest()[:16]
    return f"{job}@after:{upstream_id[: MAX_KEY - len(job) - 30]}...{digest}"


def debounced_run_key(job: str, upstream_ids: Iterable[str]) -> str:
    """The run of an after job for upstream runs that ended within one debounce period: keyed on
    their sorted ids, so the same set always gets the same key (at most 123 characters)."""
    members = "\n".join(sorted(upstream_ids))
    return f"{job}@after:{hashlib.sha256(members.encode()).hexdigest()[:16]}"


def api_run_key(job: str, idempotency_key: str) -> str:
    """The run key of an API trigger with an Idempotency-Key: the same key always names the same run."""
    return f"{job}@api:{idempotency_key}"


def resume_request_key(job: str, now: datetime, nonce: str) -> str:
    """The key of the request a resume leaves for the daemon (catch up the slots missed while paused)."""
    return f"{job}@resume:{now.isoformat()}#{nonce}"


def reload_request_key(now: datetime, nonce: str) -> str:
    return f"*@reload:{now.isoformat()}#{nonce}"
