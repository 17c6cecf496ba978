"""A loaded schedules.yaml: the jobs with their parsed triggers, and what the pipeline check found."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from scheduler.config.after_spec import AfterSpec
from scheduler.config.conditions import DETAIL_FIELDS, Condition, compile_condition
from scheduler.config.job_spec import JobSpec
from scheduler.config.upstream_templates import reads_details
from scheduler.config.yaml_source import SourceMap
from scheduler.timing.durations import format_duration, parse_duration
from scheduler.timing.triggers import Trigger


@dataclass(frozen=True)
class Job:
    name: str
    spec: JobSpec
    trigger: Trigger
    watch_root: Path | None = None  # a watch job's folder, absolute (relative paths: to the config file)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.spec.timezone)

    @property
    def trigger_text(self) -> str:
        if self.spec.cron is not None:
            return f"cron {self.spec.cron}"
        if self.spec.every is not None:
            return f"every {format_duration(parse_duration(self.spec.every))}"
        if self.spec.watch is not None:
            return f"watch {self.spec.watch.path}"
        if self.spec.after is not None:
            return f"after {self.spec.after.describe}"
        assert self.spec.at is not None
        return f"at {self.spec.at.isoformat()}"

    @property
    def grace(self) -> float | None:
        """The job's own misfire grace in seconds; None means the daemon's setting."""
        return parse_duration(self.spec.misfire_grace) if self.spec.misfire_grace is not None else None

    @property
    def timeout(self) -> float | None:
        return parse_duration(self.spec.timeout) if self.spec.timeout is not None else None

    @property
    def jitter(self) -> float:
        return parse_duration(self.spec.jitter) if self.spec.jitter is not None else 0.0

    @property
    def is_watch(self) -> bool:
        return self.spec.watch is not None

    @property
    def is_after(self) -> bool:
        return self.spec.after is not None

    @property
    def after(self) -> AfterSpec | None:
        return self.spec.after

    @functools.cached_property
    def condition(self) -> Condition | None:
        """The compiled `after.when`, or None without one. The loader has compiled it already
        (compiling is cached by text), so this does not fail for a loaded config."""
        after = self.spec.after
        return compile_condition(after.when) if after is not None and after.when is not None else None

    @functools.cached_property
    def needs_upstream_details(self) -> bool:
        """Whether `when` or a template reads metadata, steps or artifacts: those come from the
        ZenML record of the upstream run, which the daemon then waits for before deciding."""
        if self.spec.after is None:
            return False
        condition = self.condition
        if condition is not None and condition.fields & set(DETAIL_FIELDS):
            return True
        return reads_details(self.spec.parameters) or any(
            reads_details(step.parameters) for step in self.spec.steps.values()
        )

    def first_fire_after(self, now: datetime) -> datetime | None:
        """The job's next slot after `now`; None when it is disabled or never fires again."""
        return self.trigger.next_after(now) if self.spec.enabled else None

    def finished(self, launched: int) -> bool:
        """Whether the job has used up its max_runs with `launched` scheduled runs (it fires no more)."""
        return self.spec.max_runs is not None and launched >= self.spec.max_runs

    def spec_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data: what is stored, diffed and audited (computed once)."""
        return self._spec_json_data

    @functools.cached_property
    def _spec_json_data(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json")

    @functools.cached_property
    def spec_json(self) -> str:
        return canonical_json(self._spec_json_data)

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.spec_json.encode()).hexdigest()[:16]


def canonical_json(spec: dict[str, Any]) -> str:
    """One spelling per spec, so equal specs have equal digests."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Config:
    path: Path
    revision: str
    jobs: dict[str, Job]
    source: SourceMap = field(repr=False, compare=False)
    # What the pipeline check found out about each pipeline, by pipeline reference (the RESPONSE's
    # "pipelines" of `scheduler.child.check`); empty when the config was not checked.
    pipelines: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # The file says `jobs: {}`: no jobs, on purpose (a bare `jobs:` may be a save gone wrong; see
    # `scheduler.policy.reload_diff.emptying_problem`).
    empty_on_purpose: bool = False

    @property
    def project_root(self) -> Path:
        return self.path.resolve().parent

    def pipeline_description(self, job: str) -> dict[str, Any] | None:
        """The checked description of `job`'s pipeline (name, parameters with JSON schemas, steps);
        None for an unknown job, a config loaded without the pipeline check, or a pipeline the
        check could not describe."""
        found = self.jobs.get(job)
        return self.pipelines.get(found.spec.pipeline) if found is not None else None
