"""The fully resolved inputs of one run (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.config.model import Job


def launch_spec(
    job: Job, overrides: dict[str, Any], step_overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The fully resolved inputs of one run, as stored on its row and shown in the audit trail.

    `overrides` replace pipeline parameters; `step_overrides` (step -> input -> value) replace or
    add step parameters, keeping the job's other parameters of that step.
    """
    steps = {name: step.model_dump() for name, step in job.spec.steps.items()}
    for name, values in (step_overrides or {}).items():
        configured = steps.get(name, {})
        steps[name] = {**configured, "parameters": {**configured.get("parameters", {}), **values}}
    return {
        "pipeline": job.spec.pipeline,
        "parameters": {**job.spec.parameters, **overrides},
        "steps": steps,
        "enable_cache": job.spec.enable_cache,
    }
