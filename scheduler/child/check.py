"""Check job configurations against the real ZenML pipelines, without running them.

Run as ``python -m scheduler.child.check REQUEST.json [RESPONSE.json]`` with
the project root as working directory and on ``PYTHONPATH``.

REQUEST::

    {"project_root": "/abs/path",
     "jobs": {"<job>": {"pipeline": "package.module:attribute",
                        "parameters": {...},
                        "steps": {"<step>": {"parameters": {...}}},
                        "overridable": ["parameters.<name>", "steps.<step>.parameters.<input>"]}}}

``overridable`` (optional) is the job's ``api.overridable``; its errors have
paths ``["jobs", "<job>", "api", "overridable", <index>]``.

RESPONSE (one JSON object)::

    {"errors": [{"path": ["jobs", "<job>", ...], "message": "...", "kind": "..."}],
     "pipelines": {"<ref>": {
         "name": "<ZenML pipeline name>",
         "parameters": {"<name>": {"type": "int", "required": true, "default": null,
                                   "schema": {<JSON Schema>}}},
         "steps": {"<invocation id>": {"inputs": [...], "wired": [...],
                                       "schemas": {"<input>": {<JSON Schema>}},
                                       "from_parameter": {"<input>": "<parameter>"}}}}}}

``schema``/``schemas`` are pydantic's JSON Schema (Draft 2020-12) of the
resolved annotation; ``{}`` (any JSON value) for a missing annotation, ``Any``
or a type without a JSON Schema. ``wired`` lists the inputs the pipeline body
passes itself (a step parameter cannot set them); ``from_parameter`` maps
those it passes straight from a pipeline parameter to that parameter's name.
``steps`` describe the body as traced for the first job of each pipeline whose
parameters allowed tracing (``from_parameter`` merged over all of them); it is
empty for dynamic pipelines and when no job's body could be traced.

``kind`` is one of: "reference" (the pipeline reference does not resolve),
"unknown" (a parameter, step or step input name that does not exist: the
path ends at that name), "missing" (required pipeline parameters absent),
"type" (a value the annotation rejects), "conflict" (a step parameter, or an
``overridable`` step input, for an input the pipeline body already passes),
"trace" (the pipeline body raised while its steps were traced), "invalid" (the
request itself is malformed, e.g. an ``overridable`` entry of neither form).
``overridable`` step inputs are only checked when the body could be traced.

The response is always printed as the last line of stdout; everything else
(ZenML's logging, prints made by imported pipeline modules) is redirected to
stderr at the file-descriptor level. When RESPONSE.json is given, the same
object is also written there atomically, which is the simplest thing to read.

Exit status is 0 whenever the check ran, including when it found errors (they
are data); anything else means the checker itself crashed, or (exit 1, no
RESPONSE, the last line of stderr says what to run) the ZenML store cannot be
used.

The first check (or run) in a ZenML config initialises its store, serialised
with any other child doing the same (`scheduler.child.store_setup`): the
daemon's start-up check thereby prepares a new store before any run fires.
Beyond that nothing is written to the ZenML store: the pipeline body is only
traced with ``Pipeline.prepare`` (the same compilation pass a run starts with),
which records the step invocations in memory and never opens a store
connection.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from scheduler.child.parameters import (
    Errors,
    Path_,
    accepts_any_keyword,
    check_pipeline_parameters,
    describe_parameters,
)
from scheduler.child.pipeline_loading import (
    PipelineRefError,
    describe_exception,
    import_pipeline_module,
    pipeline_from_module,
    prepare_import_path,
    split_ref,
)
from scheduler.child.step_wiring import check_overridable, check_steps, describe_steps, trace_invocations
from scheduler.child.store_setup import StoreNotReady, ensure_store_ready

if TYPE_CHECKING:
    from zenml.pipelines.pipeline_definition import Pipeline


# --------------------------------------------------------------------------
# Request handling
# --------------------------------------------------------------------------


class _Checker:
    """Checks all jobs of one request; imports each module once."""

    def __init__(self, project_root: str) -> None:
        self.project_root = project_root
        self.errors = Errors()
        self.pipelines: dict[str, dict[str, Any]] = {}
        self._modules: dict[str, ModuleType | PipelineRefError] = {}
        self._resolved: dict[str, Pipeline | PipelineRefError] = {}

    def resolve(self, ref: object) -> tuple[str, Pipeline]:
        """Return the normalised reference and its pipeline.

        Raises:
            PipelineRefError: When the reference does not lead to a pipeline.
        """
        module_name, attribute = split_ref(ref)
        key = f"{module_name}:{attribute}"
        if key not in self._resolved:
            self._resolved[key] = self._resolve_uncached(key, module_name)
        found = self._resolved[key]
        if isinstance(found, PipelineRefError):
            raise found
        return key, found

    def _resolve_uncached(self, ref: str, module_name: str) -> Pipeline | PipelineRefError:
        if module_name not in self._modules:
            try:
                self._modules[module_name] = import_pipeline_module(module_name, self.project_root)
            except PipelineRefError as exc:
                self._modules[module_name] = exc
        module = self._modules[module_name]
        if isinstance(module, PipelineRefError):
            return module
        try:
            pipeline = pipeline_from_module(module, ref)
        except PipelineRefError as exc:
            return exc
        self.pipelines[ref] = {"name": pipeline.name, "parameters": describe_parameters(pipeline), "steps": {}}
        return pipeline

    def check_job(self, job: str, spec: Any) -> None:
        path: Path_ = ["jobs", job]
        if not isinstance(spec, Mapping):
            self.errors.add(path, "expected a mapping with a 'pipeline' entry", kind="invalid")
            return
        params = spec.get("parameters") or {}
        steps = spec.get("steps") or {}
        if not isinstance(params, Mapping):
            self.errors.add([*path, "parameters"], "expected a mapping of names to values", kind="invalid")
            params = None
        if not isinstance(steps, Mapping):
            self.errors.add([*path, "steps"], "expected a mapping of step names to settings", kind="invalid")
            steps = None
        try:
            ref, pipeline = self.resolve(spec.get("pipeline"))
        except PipelineRefError as exc:
            self.errors.add([*path, "pipeline"], str(exc), kind="reference")
            return
        deferred = spec.get("deferred") or []  # parameters an after job fills at run time
        traced = self._trace(path, ref, pipeline, params, steps, deferred) if params is not None else None
        overridable = spec.get("overridable") or []
        if not isinstance(overridable, list):
            self.errors.add([*path, "api", "overridable"], "expected a list of strings", kind="invalid")
            return
        parameters = self.pipelines[ref]["parameters"]
        open_ended = accepts_any_keyword(pipeline)
        where = [*path, "api", "overridable"]
        for problem in check_overridable(overridable, parameters, open_ended, pipeline.name, traced, where):
            self.errors.add(problem.path, problem.message, kind=problem.kind)

    def _trace(
        self,
        path: Path_,
        ref: str,
        pipeline: Pipeline,
        params: Mapping[str, Any],
        steps: Mapping[str, Any] | None,
        deferred: list[str],
    ) -> Pipeline | None:
        """Check the job's parameters and steps; return the traced body, None if it cannot be traced."""
        described = self.pipelines[ref]["parameters"]
        arguments = check_pipeline_parameters(
            pipeline, described, params, [*path, "parameters"], self.errors, deferred=deferred
        )
        if arguments is None or pipeline.is_dynamic:
            # Without all required values (or for dynamic pipelines, whose steps
            # only exist at run time) the body cannot be traced.
            return None
        try:
            traced = trace_invocations(pipeline, arguments)
        except Exception as exc:
            self.errors.add(
                [*path, "pipeline"],
                f"tracing the steps of {pipeline.name} with these parameters failed: {describe_exception(exc)}",
                kind="trace",
            )
            return None
        known_steps = self.pipelines[ref]["steps"]
        for inv_id, info in describe_steps(traced).items():
            known = known_steps.setdefault(inv_id, info)
            # A value shared by chance (a small int, None) hides a wiring in one job's trace only.
            known["from_parameter"] = {**info["from_parameter"], **known["from_parameter"]}
        if steps:
            for problem in check_steps(traced, steps, [*path, "steps"]):
                self.errors.add(problem.path, problem.message, kind=problem.kind)
        return traced

    def response(self) -> dict[str, Any]:
        return {"errors": self.errors.items, "pipelines": self.pipelines}


def check_request(request: Any) -> dict[str, Any]:
    """Check every job of a request; never raises for configuration problems."""
    checker = _Checker("")
    if not isinstance(request, Mapping):
        checker.errors.add([], "request must be a JSON object", kind="invalid")
        return checker.response()
    project_root = request.get("project_root")
    if not isinstance(project_root, str) or not Path(project_root).is_dir():
        checker.errors.add(["project_root"], f"not an existing folder: {project_root!r}", kind="invalid")
        return checker.response()
    prepare_import_path(project_root)
    checker = _Checker(str(Path(project_root).resolve()))
    jobs = request.get("jobs") or {}
    if not isinstance(jobs, Mapping):
        checker.errors.add(["jobs"], "expected a mapping of job names to settings", kind="invalid")
        jobs = {}
    for job, spec in jobs.items():
        checker.check_job(str(job), spec)
    return checker.response()


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point fd 1 at stderr, so only the response reaches the real stdout.

    Done on the descriptor rather than ``sys.stdout`` because logging handlers
    keep their own reference to the stream they were created with.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m scheduler.child.check REQUEST.json [RESPONSE.json]``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print(
            "usage: python -m scheduler.child.check REQUEST.json [RESPONSE.json]",
            file=sys.stderr,
        )
        return 2
    with open(args[0], encoding="utf-8") as fh:
        request = json.load(fh)
    with _stdout_to_stderr():
        try:
            ensure_store_ready()
        except StoreNotReady as exc:
            # Not a configuration problem, so no response: the daemon shows stderr's last line.
            print(f"cannot check the pipelines: {exc}", file=sys.stderr, flush=True)
            return 1
        response = check_request(request)
    text = json.dumps(response, default=repr)
    if len(args) == 2:
        _write_atomic(args[1], text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
