"""The `after:` block of a job: run it when a run of another job, or of any ZenML pipeline, ends.

Pure: whether `after.job` names a job of the file, and whether `after: job:` edges form a cycle,
are checked by the loader, which sees every job and can point at the line; the `when` condition
is compiled there too (`scheduler.config.conditions`), so that this model loads no CEL library.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from scheduler.timing.durations import Duration, parse_duration

# How a run of one of our jobs ends (the run ledger's outcomes).
OUR_STATUSES = ("succeeded", "failed", "cancelled", "timed_out", "lost")
# ZenML 0.98's finished ExecutionStatus values (`ExecutionStatus.is_finished`): how a ZenML run
# of any pipeline ends, whoever started it. `skipped` and `retried` are step states in practice.
ZENML_STATUSES = ("completed", "cached", "failed", "cancelled", "stopped", "skipped", "retried")
# For `after: pipeline:`, `succeeded` is shorthand for a ZenML run that did its work or reused it.
SUCCEEDED_ALIAS = "succeeded"
ZENML_SUCCEEDED = ("completed", "cached")
DEFAULT_STATUSES = (SUCCEEDED_ALIAS,)


class AfterSpec(BaseModel):
    """What ends a run of this job's upstream, and which of those ends start this job; see the
    README's "Runs after runs"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str | None = None
    pipeline: str | None = None
    status: list[str] | None = None
    when: str | None = None
    debounce: Duration | None = None

    @field_validator("job", "pipeline")
    @classmethod
    def _name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.strip():
            named = "a job of this file" if info.field_name == "job" else "a ZenML pipeline"
            raise ValueError(f"must name {named}")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError(f"list at least one status, e.g. [{SUCCEEDED_ALIAS}] (the default), or leave status out")
        ours = info.data.get("pipeline") is None  # `job:` (or neither, refused below) speaks our statuses
        allowed = OUR_STATUSES if ours else (SUCCEEDED_ALIAS, *ZENML_STATUSES)
        for status in value:
            if status not in allowed:
                raise ValueError(_status_message(status, ours, allowed))
        return value

    @field_validator("when")
    @classmethod
    def _when(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("give a condition such as 'metadata.drift_score > 0.2', or leave when out")
        return value

    @field_validator("debounce")
    @classmethod
    def _debounce(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) < 1:
            raise ValueError("must be at least 1s")
        return value

    @model_validator(mode="after")
    def _one_upstream(self) -> AfterSpec:
        if (self.job is None) == (self.pipeline is None):
            found = "both" if self.job is not None else "neither"
            raise ValueError(
                f"needs exactly one of job (a job of this file) or pipeline (a ZenML pipeline by name); found {found}"
            )
        return self

    @property
    def statuses(self) -> tuple[str, ...]:
        """The upstream statuses that start this job, as written (duplicates dropped)."""
        return tuple(dict.fromkeys(self.status)) if self.status else DEFAULT_STATUSES

    @property
    def debounce_seconds(self) -> float:
        return parse_duration(self.debounce) if self.debounce is not None else 0.0

    @property
    def describe(self) -> str:
        """The upstream in a few words: ``drift-check`` or ``pipeline drift_pipeline``."""
        return self.job if self.job is not None else f"pipeline {self.pipeline}"

    def matches_status(self, status: str, ours: bool) -> bool:
        """Whether an upstream run that ended with `status` starts this job. `ours` says which
        vocabulary `status` is in: True for our run statuses (OUR_STATUSES), False for ZenML's.
        The spec speaks the vocabulary of its kind; across the two only success translates (our
        `succeeded` is a ZenML `completed`; for `pipeline:`, `succeeded` means completed or cached)."""
        wanted = self.statuses
        if self.job is not None:  # our statuses
            return status in wanted if ours else status in ZENML_SUCCEEDED and SUCCEEDED_ALIAS in wanted
        if ours:
            return status == SUCCEEDED_ALIAS and any(s in wanted for s in (SUCCEEDED_ALIAS, *ZENML_SUCCEEDED))
        return status in wanted or (status in ZENML_SUCCEEDED and SUCCEEDED_ALIAS in wanted)


def _status_message(status: str, ours: bool, allowed: tuple[str, ...]) -> str:
    kind = "after: job: (our run statuses)" if ours else "after: pipeline: (ZenML run statuses)"
    message = f"{status!r} is not one of the statuses of {kind}: {', '.join(allowed)}"
    if ours and status in ZENML_STATUSES:
        message += f"; {status!r} is a ZenML status, for after: pipeline:"
    elif not ours and status in OUR_STATUSES:
        message += f"; {status!r} is a status of our runs, for after: job:"
    return message


def static_cycles(edges: Mapping[str, str]) -> list[list[str]]:
    """Every cycle of `after: job:` edges (job -> the job it runs after), each once, as the jobs
    in edge order starting from the cycle's smallest name; the cycles sorted by that name. A job
    after itself is a cycle of one. Each job has at most one edge, so one walk per job finds all."""
    done: set[str] = set()
    cycles = []
    for start in sorted(edges):
        path: list[str] = []
        on_path: dict[str, int] = {}
        node: str | None = start
        while node is not None and node not in done and node not in on_path:
            on_path[node] = len(path)
            path.append(node)
            node = edges.get(node)
        if node is not None and node in on_path:
            cycle = path[on_path[node] :]
            first = cycle.index(min(cycle))
            cycles.append(cycle[first:] + cycle[:first])
        done.update(path)
    return sorted(cycles, key=lambda cycle: cycle[0])
