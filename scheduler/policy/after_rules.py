"""When the end of an upstream run starts an after job, and with what (pure: no database, no
clock; `now` is passed in).

The daemon feeds each ended run (ours, or any ZenML run of a followed pipeline) as a view (see
`scheduler.config.conditions`) to `match` for each after job that follows it; a Matched run is
launched under `after_run_key` (or, with a debounce, `debounced_run_key` once `debounce_due`);
`chain_problem` stops runs that would loop through pipelines; `plan_catch_up` decides about
upstream runs that ended while no daemon ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from scheduler.config.after_spec import static_cycles
from scheduler.config.conditions import ConditionError
from scheduler.config.model import Job
from scheduler.config.upstream_templates import TemplateError, has_template, render
from scheduler.policy.keys import after_run_key, debounced_run_key
from scheduler.timing.clock import require_aware

__all__ = [
    "AFTER_CATCHUP_REASONS",
    "Errored",
    "Matched",
    "NotMatched",
    "after_run_key",
    "chain_after",
    "chain_problem",
    "debounce_due",
    "debounced_run_key",
    "match",
    "plan_catch_up",
    "static_cycles",
]

# The skip codes of `plan_catch_up`, worded like the catch-up of missed slots
# (`scheduler.store.catalog.CATCHUP_REASONS`).
AFTER_CATCHUP_REASONS = {
    "missed": "the upstream run ended while no daemon ran, longer ago than the grace window",
    "coalesced": "missed; catchup: latest runs only after the newest upstream run that ended while no daemon ran",
    "catchup-none": "missed; catchup: none runs after no upstream run that ended while no daemon ran",
    "catchup-limit": "missed; catchup: all runs after at most max_catchup upstream runs that ended while no "
    "daemon ran, the newest",
}


# ---- chains of runs through pipelines ----------------------------------------------------------


def chain_after(chain: Sequence[str], upstream_pipeline: str) -> tuple[str, ...]:
    """The chain of a run started after an upstream run: the upstream's own chain (the pipelines
    of the runs that led to it, oldest first) followed by the upstream's pipeline."""
    return (*chain, upstream_pipeline)


def chain_problem(chain: Sequence[str], downstream_pipeline: str, max_depth: int) -> tuple[str, str] | None:
    """(code, reason) when a run of `downstream_pipeline` with this `chain` (from `chain_after`)
    must not start: ``cycle`` when its pipeline is already in the chain (the runs would go round
    for ever), ``chain-depth`` when the chain has more than `max_depth` links (max_depth 10 allows
    a run at the end of 10 upstream runs, and refuses the 11th link); None when it may start.
    A cycle is reported before the depth."""
    if downstream_pipeline in chain:
        loop = " -> ".join([*chain, downstream_pipeline])
        return "cycle", f"pipeline {downstream_pipeline} would run again after its own run: {loop}"
    if len(chain) > max_depth:
        return "chain-depth", (
            f"the run would be the end of a chain of {len(chain)} upstream runs, more than the {max_depth} allowed: "
            + " -> ".join([*chain, downstream_pipeline])
        )
    return None


# ---- does an upstream run start the job? -------------------------------------------------------


@dataclass(frozen=True)
class Matched:
    """Start the job. `parameters` and `steps` are only the overrides the templates filled:
    the job's parameters that hold a template, and {step: {input: value}} for templated step inputs."""

    parameters: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    reads: dict[str, Any] = field(default_factory=dict)  # what `when` read, for the audit trail


@dataclass(frozen=True)
class NotMatched:
    """The run does not start the job (its status is not followed, or `when` is false)."""

    reason: str
    reads: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Errored:
    """The job cannot decide about this run: `when` failed to evaluate or a template cannot be
    filled (a missing key, a null in text). Nothing is started; the error is worth showing."""

    error: str
    reads: dict[str, Any] = field(default_factory=dict)


Outcome = Matched | NotMatched | Errored


def match(job: Job, view: dict[str, Any]) -> Outcome:
    """Whether the ended upstream run `view` starts after job `job`: its status, then `when`,
    then the templates filled from it. The status is in our vocabulary when the view is a run
    of one of our jobs and the job follows a job (`after.job`), else in ZenML's."""
    after = job.after
    if after is None:
        raise ValueError(f"job {job.name!r} is not an after job")
    if after.job is not None and view.get("job") is not None and view["job"] != after.job:
        return NotMatched(f"the run is of job {view['job']!r}, not of {after.job!r}")
    ours = view.get("job") is not None and after.job is not None
    status = str(view.get("status"))
    if not after.matches_status(status, ours):
        followed = ", ".join(after.statuses)
        return NotMatched(f"the upstream run ended {status}; {job.name} runs after {after.describe} ends {followed}")
    reads: dict[str, Any] = {}
    condition = job.condition
    if condition is not None:
        reads = condition.reads(view)
        try:
            if not condition.evaluate(view):
                return NotMatched(f"when is false: {condition.text}", reads)
        except ConditionError as exc:
            return Errored(f"after.when: {exc.message}", reads)
    try:
        parameters = {key: value for key, value in job.spec.parameters.items() if has_template(value)}
        steps = {
            step: {key: value for key, value in config.parameters.items() if has_template(value)}
            for step, config in job.spec.steps.items()
        }
        rendered = render(parameters, view)
        rendered_steps = {step: render(inputs, view) for step, inputs in steps.items() if inputs}
    except TemplateError as exc:
        return Errored(str(exc), reads)
    return Matched(rendered, rendered_steps, reads)


# ---- timing ------------------------------------------------------------------------------------


def debounce_due(last_finished: datetime, debounce_s: float, now: datetime) -> bool:
    """Whether the quiet period has passed: `debounce_s` seconds since the newest upstream run
    ended (exactly then counts as passed)."""
    require_aware(last_finished, "last_finished")
    require_aware(now, "now")
    return now - last_finished >= timedelta(seconds=debounce_s)


def plan_catch_up(
    finished: Sequence[datetime], catchup: str, grace: timedelta, max_catchup: int, now: datetime
) -> list[str | None]:
    """For upstream runs that ended while no daemon ran (their end times, oldest first), one
    entry each: None to run after it, or the skip code (see AFTER_CATCHUP_REASONS). Those that
    ended more than `grace` before `now` are ``missed``; of the others, catchup ``none`` runs
    after none, ``latest`` after the newest only, ``all`` after the newest `max_catchup`."""
    require_aware(now, "now")
    plan: list[str | None] = ["missed" if now - require_aware(end, "finished") > grace else None for end in finished]
    recent = sorted((end, index) for index, end in enumerate(finished) if plan[index] is None)
    if catchup == "none":
        keep = 0
    elif catchup == "latest":
        keep = 1
    elif catchup == "all":
        keep = max_catchup
    else:
        raise ValueError(f"unknown catchup {catchup!r}; expected none, latest or all")
    code = {"none": "catchup-none", "latest": "coalesced", "all": "catchup-limit"}[catchup]
    for _, index in recent[: max(0, len(recent) - keep)]:
        plan[index] = code
    return plan
