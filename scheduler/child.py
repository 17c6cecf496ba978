"""Launch one ZenML pipeline run in its own process.

Run as ``python -m scheduler.child SPEC.json`` with the project root as working
directory and on ``PYTHONPATH``. SPEC fields: ``run_key``, ``job``, ``pipeline``
("package.module:attribute"), ``project_root`` (absolute), ``parameters``,
``steps`` ({step: {"parameters": {...}}}), ``enable_cache`` (bool or null),
``run_name`` (unique per launch), ``tags`` (list of str), ``result_path``
(absolute).

The outcome is written atomically to ``result_path``::

    {"status": "succeeded" | "failed" | "cancelled",
     "zenml_run_id": str | null, "zenml_run_name": str | null,
     "zenml_status": str | null, "error": str | null,
     "started_at": ISO-8601 UTC, "finished_at": ISO-8601 UTC}

Exit status: 0 succeeded, 1 the run failed or was cancelled, 3 the run could
not start (unreadable spec, import error, invalid parameters or step
configuration: no ZenML run exists for it).

``enable_cache: null`` keeps ZenML's default, which is caching ON: a launch
whose inputs and code did not change may then complete without executing any
step.

SIGTERM/SIGINT cancel: ZenML's own handler interrupts a running step and marks
the run failed; outside a step this module unwinds the launch itself and marks
whatever it left unfinished as failed. Either way the result says
``cancelled`` (exit 1) unless the run had already completed. A second signal
exits at once without writing a result.

The ZenML source root is set to ``project_root`` explicitly, so no ``.zen``
folder (``zenml init``) is needed and sources are recorded as user code.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zenml.models import PipelineRunResponse
    from zenml.pipelines.pipeline_definition import Pipeline

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_NOT_STARTED = 3

_MAX_ERROR_CHARS = 2000


class SpecError(ValueError):
    """The launch spec is missing a field or has one of the wrong type."""


class Cancelled(BaseException):
    """Raised in the main thread when a stop signal arrives outside a step.

    A BaseException so that ``except Exception`` blocks in ZenML or user code
    do not swallow it.
    """


@dataclass(frozen=True)
class LaunchSpec:
    """One launch, as written by the daemon."""

    run_key: str
    job: str
    pipeline: str
    project_root: str
    run_name: str
    result_path: str
    parameters: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    enable_cache: bool | None = None
    tags: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, raw: Any) -> LaunchSpec:
        """Validate a decoded spec.

        Raises:
            SpecError: Naming the first offending field.
        """
        if not isinstance(raw, dict):
            raise SpecError("spec must be a JSON object")

        def text(name: str) -> str:
            value = raw.get(name)
            if not isinstance(value, str) or not value:
                raise SpecError(f"spec field {name!r} must be a non-empty string")
            return value

        def absolute(name: str) -> str:
            value = text(name)
            if not os.path.isabs(value):
                raise SpecError(f"spec field {name!r} must be an absolute path")
            return value

        parameters = raw.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise SpecError("spec field 'parameters' must be an object")
        steps = raw.get("steps") or {}
        if not isinstance(steps, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("parameters", {}), dict) for v in steps.values()
        ):
            raise SpecError("spec field 'steps' must map step names to {\"parameters\": {...}}")
        enable_cache = raw.get("enable_cache")
        if enable_cache is not None and not isinstance(enable_cache, bool):
            raise SpecError("spec field 'enable_cache' must be true, false or null")
        tags = raw.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise SpecError("spec field 'tags' must be a list of strings")
        project_root = absolute("project_root")
        if not Path(project_root).is_dir():
            raise SpecError(f"project_root {project_root!r} is not a folder")
        return cls(
            run_key=text("run_key"),
            job=text("job"),
            pipeline=text("pipeline"),
            project_root=project_root,
            run_name=text("run_name"),
            result_path=absolute("result_path"),
            parameters=parameters,
            steps=steps,
            enable_cache=enable_cache,
            tags=tags,
        )


@dataclass
class LaunchResult:
    """What the daemon reads back from ``result_path``."""

    status: str
    started_at: str
    finished_at: str = ""
    zenml_run_id: str | None = None
    zenml_run_name: str | None = None
    zenml_status: str | None = None
    error: str | None = None

    def to_json(self) -> str:
        """Serialise with a fixed key order (readable when inspected by hand)."""
        return json.dumps(
            {
                "status": self.status,
                "zenml_run_id": self.zenml_run_id,
                "zenml_run_name": self.zenml_run_name,
                "zenml_status": self.zenml_status,
                "error": self.error,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
            }
        )


def utc_now_iso() -> str:
    """Current time as ISO-8601 with an explicit UTC offset."""
    return datetime.now(timezone.utc).isoformat()


def write_result(path: str, result: LaunchResult) -> None:
    """Write the result so a reader never sees a partial file."""
    result.finished_at = result.finished_at or utc_now_iso()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(result.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def concise_error(exc: BaseException) -> str:
    """Exception type and the informative head of its message.

    ZenML appends how-to-fix prose and fenced examples to some messages, and
    wraps pydantic errors in a ValueError that says "see the error above";
    neither belongs in a one-line status, so they are replaced by the facts.
    """
    message = str(exc).split("```", 1)[0].strip()
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    while lines and lines[-1].endswith("Example:"):
        lines.pop()
    fields = _pydantic_summary(exc)
    if fields:
        lines = [lines[0].split(". ", 1)[0].rstrip(".") + f": {fields}"] if lines else [fields]
    text = " | ".join(lines[:6])
    out = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return out[:_MAX_ERROR_CHARS]


def _pydantic_summary(exc: BaseException) -> str:
    """Per-field messages of a pydantic error behind a ZenML ValueError."""
    cause = exc.__cause__
    errors = getattr(cause, "errors", None)
    if cause is None or not callable(errors) or type(cause).__name__ != "ValidationError":
        return ""
    parts = []
    for err in errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "?"
        parts.append(f"{loc}: {err.get('msg')} (got {err.get('input')!r})")
    return "; ".join(parts)


class SignalGuard:
    """Turns SIGTERM/SIGINT into a prompt, recorded cancellation."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        """Handle SIGTERM and SIGINT from now on (call early, before importing ZenML)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    @property
    def cancelled(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            # Second signal: the launcher has run out of patience.
            os._exit(EXIT_FAILED)
        self.signum = signum
        print(f"received signal {signum}, stopping the run", flush=True)
        # While a step runs, ZenML installs its own handler, which marks the
        # step stopped, raises its interruption in the step and then calls us
        # as the previous handler: we must not raise over its exception then.
        if signal.getsignal(signum) == self._handle:
            raise Cancelled(f"signal {signum}")


def _apply_options(pipeline: Pipeline, spec: LaunchSpec) -> Pipeline:
    options: dict[str, Any] = {
        "run_name": spec.run_name,
        "parameters": spec.parameters,
        "steps": spec.steps,
        "tags": spec.tags,
    }
    if spec.enable_cache is not None:
        options["enable_cache"] = spec.enable_cache
    return pipeline.with_options(**options)


def _find_run(run_name: str) -> PipelineRunResponse | None:
    """The run created for this launch, if it got that far."""
    from zenml.client import Client

    try:
        return Client().get_pipeline_run(run_name, allow_name_prefix_match=False)
    except KeyError:
        return None


def _failed_steps(run: PipelineRunResponse) -> list[str]:
    """``name (ExceptionType: message)`` for each failed step of the run."""
    from zenml.enums import ExecutionStatus

    described = []
    for name, step in run.steps.items():
        if step.status != ExecutionStatus.FAILED:
            continue
        info = step.exception_info
        if info is None or not info.message:
            described.append(name)
            continue
        kind = (info.source or "").rsplit(".", 1)[-1]
        described.append(f"{name} ({kind}: {info.message})" if kind else f"{name} ({info.message})")
    return described


def _finish_abandoned(run: PipelineRunResponse) -> PipelineRunResponse:
    """Mark steps (and the run) that an interrupted launch left open as failed.

    Otherwise a run interrupted between steps would stay "running" forever.
    """
    from zenml.client import Client
    from zenml.enums import ExecutionStatus
    from zenml.orchestrators import publish_utils
    from zenml.utils.time_utils import utc_now

    if run.status.is_finished:
        return run
    for step in run.steps.values():
        if not step.status.is_finished:
            publish_utils.publish_failed_step_run(step.id)
    run = Client().get_pipeline_run(run.id)
    if not run.status.is_finished:
        publish_utils.publish_pipeline_run_status_update(
            pipeline_run_id=run.id,
            status=ExecutionStatus.FAILED,
            status_reason="launch interrupted",
            end_time=utc_now(),
        )
        run = Client().get_pipeline_run(run.id)
    return run


def _fill_from_run(result: LaunchResult, run: PipelineRunResponse) -> None:
    result.zenml_run_id = str(run.id)
    result.zenml_run_name = run.name
    result.zenml_status = run.status.value


def launch(spec: LaunchSpec, guard: SignalGuard, result: LaunchResult) -> int:
    """Import, configure and run the pipeline; fill ``result``; return the exit code."""
    from scheduler.pipeline_check import PipelineRefError, load_pipeline

    print(f"run {spec.run_name}: job {spec.job}, pipeline {spec.pipeline}", flush=True)
    try:
        configured = _apply_options(load_pipeline(spec.pipeline, spec.project_root), spec)
    except PipelineRefError as exc:
        result.status, result.error = "failed", str(exc)
        return EXIT_NOT_STARTED
    except Exception as exc:
        result.status, result.error = "failed", concise_error(exc)
        return EXIT_NOT_STARTED

    failure: BaseException | None = None
    run: PipelineRunResponse | None = None
    try:
        run = configured()
    except (Exception, Cancelled) as exc:
        failure = exc
        traceback.print_exc()

    # A failed run's exception carries no id; the unique run name finds it.
    if failure is not None or run is None:
        run = _find_run(spec.run_name)
    if run is not None and guard.cancelled:
        run = _finish_abandoned(run)
    if run is not None:
        _fill_from_run(result, run)
        print(f"run {spec.run_name}: zenml run id {run.id}, status {run.status.value}", flush=True)
    return _settle(result, run, failure, guard)


def _settle(
    result: LaunchResult,
    run: PipelineRunResponse | None,
    failure: BaseException | None,
    guard: SignalGuard,
) -> int:
    """Decide status, error and exit code from what the launch left behind."""
    from zenml.enums import ExecutionStatus

    if run is not None and run.status == ExecutionStatus.COMPLETED:
        # Even when a signal came in after the last step: the work is done.
        result.status = "succeeded"
        return EXIT_SUCCEEDED
    if guard.cancelled:
        result.status = "cancelled"
        result.error = f"cancelled by signal {guard.signum}"
        return EXIT_FAILED

    result.status = "failed"
    if failure is not None:
        result.error = concise_error(failure)
    elif run is not None:
        result.error = f"run ended with status {run.status.value}"
    else:
        result.error = "the pipeline did not create a run"
    if run is None:
        # Nothing reached the store: ZenML rejected the configuration first.
        return EXIT_NOT_STARTED
    failed = _failed_steps(run)
    if failed:
        # The step's own exception says more than the orchestrator's wrapper.
        result.error = f"failed step(s): {'; '.join(failed)}"[:_MAX_ERROR_CHARS]
    return EXIT_FAILED


def _read_spec(path: str) -> tuple[LaunchSpec | None, str | None, str | None]:
    """Return (spec, result_path, error); result_path is best effort for errors."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as exc:
        return None, None, f"cannot read spec {path}: {exc}"
    result_path = raw.get("result_path") if isinstance(raw, dict) else None
    if not (isinstance(result_path, str) and os.path.isabs(result_path)):
        result_path = None
    try:
        return LaunchSpec.from_dict(raw), result_path, None
    except SpecError as exc:
        return None, result_path, str(exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m scheduler.child SPEC.json``."""
    guard = SignalGuard()
    guard.install()
    result = LaunchResult(status="failed", started_at=utc_now_iso())
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m scheduler.child SPEC.json", file=sys.stderr)
        return EXIT_NOT_STARTED

    spec, result_path, error = _read_spec(args[0])
    if spec is None:
        print(f"could not start: {error}", file=sys.stderr, flush=True)
        if result_path:
            result.error = error
            write_result(result_path, result)
        return EXIT_NOT_STARTED

    try:
        code = launch(spec, guard, result)
    except Cancelled:
        # Signalled outside the pipeline call, e.g. while ZenML was importing.
        result.status, result.error = "cancelled", f"cancelled by signal {guard.signum}"
        code = EXIT_FAILED
    except Exception as exc:
        traceback.print_exc()
        result.status, result.error = "failed", concise_error(exc)
        code = EXIT_FAILED if result.zenml_run_id else EXIT_NOT_STARTED
    result.finished_at = utc_now_iso()
    write_result(spec.result_path, result)
    print(f"run {spec.run_name}: {result.status}", flush=True)
    if result.error:
        print(f"error: {result.error}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
