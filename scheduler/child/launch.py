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
configuration, a ZenML store without an active project, a run name that is
already taken: no ZenML run exists for it).

Before its first ZenML store access the child makes sure the store is
initialised, serialised with any other child doing the same
(`scheduler.child.store_setup`). A run name that already exists in the ZenML
project (another scheduler sharing the store) fails the launch, and the result
then names no ZenML run: the existing one belongs to someone else
(`scheduler.child.run_names`).

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

import os
import signal
import sys
import traceback
from types import FrameType
from typing import TYPE_CHECKING, Any

from scheduler.child.pipeline_loading import PipelineRefError, load_pipeline
from scheduler.child.protocol import LaunchResult, LaunchSpec, read_spec, utc_now_iso, write_result
from scheduler.child.run_names import RunNameTaken, ensure_name_free, is_name_conflict
from scheduler.child.store_setup import StoreNotReady, ensure_store_ready, no_project_message

if TYPE_CHECKING:
    from zenml.models import PipelineRunResponse
    from zenml.pipelines.pipeline_definition import Pipeline

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_NOT_STARTED = 3

_MAX_ERROR_CHARS = 2000


class Cancelled(BaseException):
    """Raised in the main thread when a stop signal arrives outside a step.

    A BaseException so that ``except Exception`` blocks in ZenML or user code
    do not swallow it.
    """


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
    """The run created for this launch, if it got that far.

    Only called once `ensure_name_free` has shown that no one else's run has this name.
    """
    from zenml.client import Client

    try:
        return Client().get_pipeline_run(run_name, allow_name_prefix_match=False)
    except KeyError:
        return None
    except Exception:
        # A store that failed the run may fail the lookup too; the run's own error says more.
        traceback.print_exc()
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
    from scheduler.child.repair import finish_as_failed

    if run.status.is_finished:
        return run
    return finish_as_failed(run, "launch interrupted")[0]


def _fill_from_run(result: LaunchResult, run: PipelineRunResponse) -> None:
    result.zenml_run_id = str(run.id)
    result.zenml_run_name = run.name
    result.zenml_status = run.status.value


def launch(spec: LaunchSpec, guard: SignalGuard, result: LaunchResult) -> int:
    """Import, configure and run the pipeline; fill ``result``; return the exit code."""
    print(f"run {spec.run_name}: job {spec.job}, pipeline {spec.pipeline}", flush=True)
    try:
        # Before the pipeline module is imported: it may use the ZenML client at import time.
        ensure_store_ready()
    except StoreNotReady as exc:
        result.status, result.error = "failed", str(exc)
        return EXIT_NOT_STARTED
    try:
        configured = _apply_options(load_pipeline(spec.pipeline, spec.project_root), spec)
        ensure_name_free(spec.run_name)
    except (PipelineRefError, RunNameTaken) as exc:
        result.status, result.error = "failed", str(exc)
        return EXIT_NOT_STARTED
    except Exception as exc:
        result.status, result.error = "failed", no_project_message(exc) or concise_error(exc)
        return EXIT_NOT_STARTED

    failure: BaseException | None = None
    run: PipelineRunResponse | None = None
    try:
        run = configured()
    except (Exception, Cancelled) as exc:
        failure = exc
        traceback.print_exc()

    if failure is not None and is_name_conflict(failure, spec.run_name):
        # Created by someone else between our check and our call: not ours to report.
        result.status, result.error = "failed", str(RunNameTaken(spec.run_name))
        return EXIT_NOT_STARTED

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
        result.error = no_project_message(failure) or concise_error(failure)
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m scheduler.child SPEC.json``."""
    guard = SignalGuard()
    guard.install()
    result = LaunchResult(status="failed", started_at=utc_now_iso())
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m scheduler.child SPEC.json", file=sys.stderr)
        return EXIT_NOT_STARTED

    spec, result_path, error = read_spec(args[0])
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
