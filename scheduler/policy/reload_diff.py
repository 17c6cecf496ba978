"""Diff the jobs in schedules.yaml against the jobs the state database knows (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scheduler.config.model import Config
from scheduler.errors import Problem


@dataclass(frozen=True)
class JobChange:
    name: str
    fields: dict[str, tuple[Any, Any]]  # field -> (old, new)


@dataclass(frozen=True)
class Diff:
    added: list[str] = field(default_factory=list)
    changed: list[JobChange] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


# Fields that define a job's grid of slots: a change means the old slots are not owed any more.
SLOT_GRID_FIELDS = ("cron", "every", "at", "timezone")


def diff_jobs(desired: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> Diff:
    """Compare job specs by name; a changed job lists exactly the fields that differ."""
    result = Diff()
    for name in sorted(desired):
        if name not in current:
            result.added.append(name)
            continue
        old, new = current[name], desired[name]
        fields = {
            key: (old.get(key), new.get(key)) for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)
        }
        if fields:
            result.changed.append(JobChange(name, fields))
        else:
            result.unchanged.append(name)
    result.removed.extend(sorted(name for name in current if name not in desired))
    return result


# Fields whose change means the job's timing in APScheduler must be rebuilt.
TIMING_FIELDS = (*SLOT_GRID_FIELDS, "start", "end", "enabled", "max_runs")


def retime_needed(change: JobChange) -> bool:
    return any(key in change.fields for key in TIMING_FIELDS)


def trigger_changed(change: JobChange) -> bool:
    """A changed trigger or timezone means the old slot grid no longer applies."""
    return any(key in change.fields for key in SLOT_GRID_FIELDS)


def emptying_problem(config: Config, active: list[str], allow_empty: bool) -> Problem | None:
    """Why `config` may not be applied over the `active` jobs of the state database, or None.

    A file without jobs over a database that runs some would remove every one of them; one bad
    save (an editor emptying the file, `jobs:` left with everything under it commented out)
    must not do that silently. `jobs: {}` says it on purpose, and so does `allow_empty`."""
    if config.jobs or not active or config.empty_on_purpose or allow_empty:
        return None
    shown = ", ".join(active[:5]) + (f" and {len(active) - 5} more" if len(active) > 5 else "")
    return config.source.problem(
        ("jobs",),
        f"the file has no jobs: applying it would remove all {len(active)} active job(s) ({shown}); "
        "to remove every job on purpose write `jobs: {}`, or run the daemon with --allow-empty "
        "(ZENML_SCHEDULER_ALLOW_EMPTY=true)",
        key=True,
    )
