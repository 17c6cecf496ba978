"""A request to fire a job, whatever asked for it, and the run statuses (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

TriggerKind = Literal["schedule", "catchup", "manual", "file", "after"]


# Terminal and non-terminal run statuses, as stored and shown by `history`.
ACTIVE_STATUSES = ("queued", "running")


FINAL_STATUSES = ("succeeded", "failed", "skipped", "cancelled", "timed_out", "lost")


@dataclass(frozen=True)
class FireRequest:
    job: str
    trigger: TriggerKind
    run_key: str
    source: str
    scheduled_for: datetime | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    preskip: tuple[str, str] | None = None  # (code, reason) decided earlier: recorded as skipped
    files: tuple[dict[str, Any], ...] = ()  # the files a file-triggered run is for, as audited
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> input -> value, over the job's steps
    upstream: str | None = None  # an `after:` run's upstream run: our run key or the ZenML run id
    chain: tuple[str, ...] = ()  # the upstream pipelines that led to an `after:` run, oldest first
