"""Check that each job's pipeline, parameters and steps exist and fit, in a child process.

Importing pipelines means importing ZenML, which the daemon never does itself; the checker
(`scheduler.child.check`) runs in a child and answers with data that we position in the
file with the config's source map. Its descriptions of the pipelines (parameter and step-input
JSON Schemas, wiring) ride along on the checked `Config`, so the daemon can validate API
overrides later without ZenML (`scheduler.api.overrides`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from scheduler import tuning
from scheduler.config.model import Config, Job
from scheduler.config.watch_spec import templated_keys
from scheduler.errors import ConfigError, Problem, SchedulerError, SettingsError
from scheduler.policy.file_runs import Dispatch, FileSeen, file_request
from scheduler.runs.runner import child_env

CHECK_MODULE = "scheduler.child.check"


def check_request(
    config: Config, overrides: Mapping[str, Mapping[str, Any]] | None = None, only: Iterable[str] | None = None
) -> dict[str, Any]:
    overrides = overrides or {}
    names = set(config.jobs if only is None else only)
    return {
        "project_root": str(config.project_root),
        "jobs": {
            name: {
                "pipeline": job.spec.pipeline,
                "parameters": {**_checkable(job), **overrides.get(name, {})},
                "steps": {step: cfg.model_dump() for step, cfg in job.spec.steps.items()},
                "overridable": list(job.spec.api.overridable),
                "deferred": _deferred(job, overrides.get(name, {})),
            }
            for name, job in config.jobs.items()
            if name in names
        },
    }


def _deferred(job: Job, overrides: Mapping[str, Any]) -> list[str]:
    """An after job's parameters whose values come from the upstream run: their types are
    checked when they are filled in (a manual run's own values are checked now)."""
    if job.spec.after is None:
        return []
    return [key for key in templated_keys(job.spec.parameters) if key not in overrides]


def _checkable(job: Job) -> dict[str, Any]:
    """A watch job's parameters with its templates filled in by an example file, so their types can be checked."""
    if job.spec.watch is None or job.watch_root is None:
        return job.spec.parameters
    example = FileSeen("example.csv", str(job.watch_root / "example.csv"), size=0, mtime_ns=0)
    return file_request(job, Dispatch(job.name, (example,))).parameters


@dataclasses.dataclass(frozen=True)
class PipelineCheck:
    """The checker's verdict: problems positioned in the file, and the pipeline descriptions
    (the RESPONSE's "pipelines", keyed by pipeline reference)."""

    problems: list[Problem]
    pipelines: dict[str, Any]


def checked_config(
    config: Config,
    python: str,
    env: Mapping[str, str] | None = None,
    timeout: float = tuning.PIPELINE_CHECK_TIMEOUT_S,
) -> Config:
    """`config` with its pipelines' descriptions attached (`Config.pipelines`).

    Raises:
        ConfigError: Listing every problem the check found.
        SchedulerError: When the checker itself fails.
    """
    result = run_pipeline_check(config, python, env, timeout=timeout)
    if result.problems:
        raise ConfigError(result.problems)
    return dataclasses.replace(config, pipelines=result.pipelines)


def check_pipelines(
    config: Config,
    python: str,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    only: Iterable[str] | None = None,
    timeout: float = tuning.PIPELINE_CHECK_TIMEOUT_S,
) -> list[Problem]:
    """Problems found in the pipelines the config names; raise SchedulerError if the checker fails."""
    return run_pipeline_check(config, python, env, overrides, only, timeout).problems


def run_pipeline_check(
    config: Config,
    python: str,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    only: Iterable[str] | None = None,
    timeout: float = tuning.PIPELINE_CHECK_TIMEOUT_S,
) -> PipelineCheck:
    """Run the checker in a child; raise SchedulerError if it fails (no answer)."""
    if not config.jobs:
        return PipelineCheck([], {})
    request = check_request(config, overrides, only)
    with tempfile.TemporaryDirectory(prefix="zenml-scheduler-check-") as tmp:
        request_path, answer_path = Path(tmp) / "request.json", Path(tmp) / "answer.json"
        request_path.write_text(json.dumps(request, default=str))
        try:
            proc = subprocess.run(
                [python, "-m", CHECK_MODULE, str(request_path), str(answer_path)],
                cwd=config.project_root,
                env=child_env(os.environ if env is None else env, config.project_root),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SchedulerError(
                f"the pipeline check did not finish within {timeout:.0f}s: it imports ZenML and each pipeline "
                "module, so one of them may hang at import"
            ) from None
        except OSError as exc:
            raise SettingsError(f"cannot start the pipeline check with python {python!r}: {exc.strerror}") from None
        try:
            answer = json.loads(answer_path.read_text())
        except (OSError, ValueError):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise SchedulerError(f"the pipeline checker failed (exit {proc.returncode}): " + " | ".join(tail)) from None
    problems = []
    for error in answer.get("errors", []):
        path, message = _inherited(config, tuple(error["path"]), error["message"])
        # A wrong name is shown at the key; a wrong value at the value.
        at_key = error.get("kind") in ("unknown", "conflict")
        problems.append(config.source.problem(path, message, key=at_key))
    pipelines = answer.get("pipelines")
    return PipelineCheck(problems, pipelines if isinstance(pipelines, dict) else {})


def _inherited(config: Config, path: tuple[Any, ...], message: str) -> tuple[tuple[Any, ...], str]:
    """An error in a field the job takes from `defaults:` is shown there, naming the job."""
    inherited = len(path) > 2 and path[0] == "jobs" and path[:3] not in config.source.values
    if inherited and ("defaults", path[2]) in config.source.values:
        return ("defaults", *path[2:]), f"job {path[1]!r}: {message}"
    return path, message
