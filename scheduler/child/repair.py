"""Close a ZenML run whose launch process died without closing it.

Run as ``python -m scheduler.child.repair RUN_NAME [RESULT.json]`` with the
project root as working directory, after the launch child of RUN_NAME has
ended (timed out, cancelled or lost). Only then is it safe: a step that is
still executing somewhere would be marked failed under its feet.

A run whose launcher was SIGKILLed stays "running" in the store forever. The
repair marks each unfinished step failed; steps that never started get a
failed step record, because ZenML 0.98 offers no other way to give such a run
an end time (a run-level FAILED update sets the status but, under the default
CONTINUE_ON_FAILURE mode, leaves the end time empty while any step is
unaccounted for). A run-level FAILED update remains the last resort.

The report is printed as the last line of stdout and, when RESULT.json is
given, written there atomically::

    {"found": false, "run_name": str, "action": "none"}
    {"found": true, "run_name": str, "zenml_run_id": str,
     "status_before": str, "status_after": str, "end_time": ISO-8601 | null,
     "action": "none" | "marked-failed",
     "steps_failed": [str], "steps_not_started": [str]}   # marked-failed only
    {"run_name": str, "error": str}                         # exit 1

A run that is already finished is never modified, so running the repair twice
is harmless. Exit status: 0 it ran (whatever the action), 1 the repair raised,
2 bad usage.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scheduler.child.store_setup import StoreNotReady, ensure_store_ready

if TYPE_CHECKING:
    from zenml.models import PipelineRunResponse

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

USAGE = "usage: python -m scheduler.child.repair RUN_NAME [RESULT.json]"
NOT_STARTED_MESSAGE = "never started: the process running the pipeline ended first"


def _is_settled(run: PipelineRunResponse) -> bool:
    return run.status.is_finished and run.end_time is not None


def _record_unstarted_steps(run: PipelineRunResponse) -> list[str]:
    """Give steps that never started a failed record until the run can end.

    One at a time, re-reading the run after each: in FAIL_FAST and
    STOP_ON_FAILURE modes the first failure ends the run and ZenML refuses new
    steps afterwards; in CONTINUE_ON_FAILURE mode the steps downstream of a
    failed one no longer keep the run open, so they need no record.
    """
    from zenml.client import Client
    from zenml.enums import ExecutionStatus
    from zenml.models import ExceptionInfo, StepRunRequest
    from zenml.utils.time_utils import utc_now

    store = Client().zen_store
    present = set(run.steps)
    recorded: list[str] = []
    # Invocation order is a topological order for static pipelines, so each
    # recorded step has all its upstream steps already accounted for.
    for name in run.snapshot.step_configurations if run.snapshot else ():
        if name in present:
            continue
        now = utc_now()
        store.create_run_step(
            StepRunRequest(
                name=name,
                start_time=now,
                end_time=now,
                status=ExecutionStatus.FAILED,
                pipeline_run_id=run.id,
                project=run.project_id,
                exception_info=ExceptionInfo(traceback="", message=NOT_STARTED_MESSAGE),
            )
        )
        recorded.append(name)
        run = Client().get_pipeline_run(run.id)
        if _is_settled(run):
            break
    return recorded


def finish_as_failed(run: PipelineRunResponse, reason: str) -> tuple[PipelineRunResponse, list[str], list[str]]:
    """Fail the unfinished steps of `run`, give never-started steps a failed record until the run
    ends (a run-level status update alone leaves it without an end time), and as a last resort
    force the run's status. Returns the run as it is now and the step names touched."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus
    from zenml.orchestrators import publish_utils

    client = Client()
    steps = run.steps  # each access re-queries the store
    steps_failed = [name for name, step in steps.items() if not step.status.is_finished]
    for name in steps_failed:
        publish_utils.publish_failed_step_run(steps[name].id)
    run = client.get_pipeline_run(run.id)
    steps_not_started = [] if _is_settled(run) else _record_unstarted_steps(run)
    run = client.get_pipeline_run(run.id)
    if not run.status.is_finished:
        # E.g. a step configured with retries turns "retrying" instead of
        # "failed"; the run status can still be forced.
        publish_utils.publish_pipeline_run_status_update(
            pipeline_run_id=run.id, status=ExecutionStatus.FAILED, status_reason=reason
        )
        run = client.get_pipeline_run(run.id)
    return run, steps_failed, steps_not_started


def repair(run_name: str) -> dict[str, Any]:
    """Look ``run_name`` up and, unless it is finished, finish it as failed."""
    from zenml.utils import source_utils

    # Without a source root even a read-only query fails under ``python -m``
    # (ZenML would take this package's folder); no user code is imported.
    source_utils.set_custom_source_root(os.getcwd())

    from zenml.client import Client

    ensure_store_ready()

    client = Client()
    try:
        run = client.get_pipeline_run(run_name, allow_name_prefix_match=False)
    except KeyError:
        return {"found": False, "run_name": run_name, "action": "none"}

    report: dict[str, Any] = {
        "found": True,
        "run_name": run_name,
        "zenml_run_id": str(run.id),
        "status_before": run.status.value,
    }
    if run.status.is_finished:
        report.update(status_after=run.status.value, end_time=_iso(run), action="none")
        return report

    run, steps_failed, steps_not_started = finish_as_failed(
        run, "the process running the pipeline ended without finishing it"
    )
    report.update(
        status_after=run.status.value,
        end_time=_iso(run),
        action="marked-failed",
        steps_failed=steps_failed,
        steps_not_started=steps_not_started,
    )
    return report


def _iso(run: PipelineRunResponse) -> str | None:
    # ZenML stores naive UTC times.
    return run.end_time.isoformat() if run.end_time else None


def write_report(path: str, report: dict[str, Any]) -> None:
    """Write ``report`` so a reader never sees a partial file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(report, sort_keys=True))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m scheduler.child.repair RUN_NAME [RESULT.json]``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2) or not args[0].strip():
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    run_name, result_path = args[0], (args[1] if len(args) == 2 else None)

    code = EXIT_OK
    try:
        report = repair(run_name)
    except StoreNotReady as exc:
        report = {"run_name": run_name, "error": str(exc)}
        code = EXIT_ERROR
    except Exception as exc:
        traceback.print_exc()
        report = {"run_name": run_name, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        code = EXIT_ERROR
    # ZenML may have logged to stdout: the report must come last.
    sys.stderr.flush()
    print(json.dumps(report, sort_keys=True), flush=True)
    if result_path:
        try:
            write_report(result_path, report)
        except OSError as exc:
            print(f"could not write {result_path}: {exc}", file=sys.stderr)
            return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
