"""Files as runs: a complete file (or batch) and the fire request it becomes, templates filled in (pure)."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import Any

from scheduler.config.model import Job
from scheduler.config.watch_spec import render_parameters
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import file_run_key


@dataclass(frozen=True)
class FileSeen:
    """A complete file, ready to be dispatched."""

    rel: str  # relative to the watched folder, '/'-separated: the file's name in run keys
    path: str  # resolved absolute path: what the pipeline is given
    size: int
    mtime_ns: int
    digest: str | None = None  # content digest (on_modified: retrigger)
    found_at_start: bool = False

    @property
    def identity(self) -> str:
        """Content digest when known, else a digest of size and mtime."""
        if self.digest is not None:
            return self.digest[:16]
        return hashlib.sha256(f"{self.size}:{self.mtime_ns}".encode()).hexdigest()[:12]

    @property
    def version(self) -> str:
        """What makes the file new again: nothing once seen (''), or a change of content."""
        return self.digest or ""


@dataclass(frozen=True)
class Dispatch:
    """One run's worth of files (one file, or one batch), or files to record as skipped."""

    job: str
    files: tuple[FileSeen, ...]
    skip: tuple[str, str] | None = None  # (code, reason): recorded, not run


def template_values(files: tuple[FileSeen, ...], batch: str) -> dict[str, Any]:
    if batch == "per_batch":
        return {"paths": [seen.path for seen in sorted(files, key=lambda seen: seen.rel)]}
    seen = files[0]
    name = posixpath.basename(seen.rel)
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return {"path": seen.path, "name": name, "stem": stem}


def file_request(job: Job, dispatch: Dispatch) -> FireRequest:
    """The fire request for a dispatch: its run key, and the job's parameters with the templates filled in."""
    assert job.spec.watch is not None
    parameters = render_parameters(job.spec.parameters, template_values(dispatch.files, job.spec.watch.batch))
    files = tuple(
        {"file": seen.rel, "size": seen.size, "mtime_ns": seen.mtime_ns, "identity": seen.identity}
        for seen in dispatch.files
    )
    return FireRequest(
        dispatch.job, "file", file_run_key(dispatch.job, dispatch.files), "watcher",
        parameters=parameters, preskip=dispatch.skip, files=files,
    )  # fmt: skip
