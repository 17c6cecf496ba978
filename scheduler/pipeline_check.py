"""Check job configurations against the real ZenML pipelines, without running them.

Run as ``python -m scheduler.pipeline_check REQUEST.json [RESPONSE.json]`` with
the project root as working directory and on ``PYTHONPATH``.

REQUEST::

    {"project_root": "/abs/path",
     "jobs": {"<job>": {"pipeline": "package.module:attribute",
                        "parameters": {...},
                        "steps": {"<step>": {"parameters": {...}}}}}}

RESPONSE (one JSON object)::

    {"errors": [{"path": ["jobs", "<job>", ...], "message": "...", "kind": "..."}],
     "pipelines": {"<ref>": {
         "parameters": {"<name>": {"type": "int", "required": true, "default": null}},
         "steps": {"<invocation id>": {"inputs": [...], "wired": [...]}}}}}

``kind`` is one of: "reference" (the pipeline reference does not resolve),
"unknown" (a parameter, step or step input name that does not exist: the
path ends at that name), "missing" (required pipeline parameters absent),
"type" (a value the annotation rejects), "conflict" (a step parameter for an
input the pipeline body already passes), "trace" (the pipeline body raised
while its steps were traced), "invalid" (the request itself is malformed).

The response is always printed as the last line of stdout; everything else
(ZenML's logging, prints made by imported pipeline modules) is redirected to
stderr at the file-descriptor level. When RESPONSE.json is given, the same
object is also written there atomically, which is the simplest thing to read.

Exit status is 0 whenever the check ran, including when it found errors (they
are data); anything else means the checker itself crashed.

Nothing is written to the ZenML store: the pipeline body is only traced with
``Pipeline.prepare`` (the same compilation pass a run starts with), which
records the step invocations in memory and never opens a store connection.

This module imports ZenML lazily, so the reference-parsing helpers can be used
before ZenML is loaded (the launch child relies on that to keep signals prompt).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zenml.pipelines.pipeline_definition import Pipeline
    from zenml.steps.step_invocation import StepInvocation

REF_FORMAT = '"package.module:attribute"'
REF_EXAMPLE = '"pipelines.training:training_pipeline"'
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REF_RE = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*$")

Path_ = list[str]


class PipelineRefError(Exception):
    """A pipeline reference that cannot be turned into a ZenML pipeline."""


# --------------------------------------------------------------------------
# Resolving "package.module:attribute"
# --------------------------------------------------------------------------


def split_ref(ref: object) -> tuple[str, str]:
    """Split a pipeline reference into module and attribute path.

    Raises:
        PipelineRefError: When the reference is not of the expected form.
    """
    if not isinstance(ref, str) or not _REF_RE.match(ref.strip()):
        raise PipelineRefError(f"invalid pipeline reference {ref!r}: expected {REF_FORMAT}, e.g. {REF_EXAMPLE}")
    module_name, _, attribute = ref.strip().partition(":")
    return module_name, attribute


def prepare_import_path(project_root: str) -> None:
    """Make the project importable and the source root ZenML records.

    ZenML otherwise derives its source root from a ``.zen`` folder or from the
    folder of ``__main__``; under ``python -m scheduler.<x>`` the latter is this
    package, so every user source would be recorded as UNKNOWN.
    """
    from zenml.utils import source_utils

    root = str(Path(project_root).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    source_utils.set_custom_source_root(root)


def import_pipeline_module(module_name: str, project_root: str) -> ModuleType:
    """Import ``module_name``, telling a missing module from a broken one.

    Raises:
        PipelineRefError: With a message naming which of the two happened.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a miss on the module itself (or a parent package) means "not
        # found"; a missing dependency imported by the module is a failure.
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise PipelineRefError(f"module {module_name!r} not found (looked in {project_root})") from exc
        raise PipelineRefError(f"importing {module_name!r} failed: {_describe(exc)}") from exc
    except (Exception, SystemExit) as exc:
        raise PipelineRefError(f"importing {module_name!r} failed: {_describe(exc)}") from exc


def pipeline_from_module(module: ModuleType, ref: str) -> Pipeline:
    """Look the attribute part of ``ref`` up in ``module`` and check its type.

    Raises:
        PipelineRefError: When the attribute is missing or not a pipeline.
    """
    from zenml.pipelines.pipeline_definition import Pipeline
    from zenml.steps import BaseStep

    module_name, attribute = split_ref(ref)
    obj: Any = module
    walked = module_name
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise PipelineRefError(f"{walked} has no attribute {part!r}")
        obj = getattr(obj, part)
        walked = f"{walked}.{part}" if walked != module_name else f"{module_name}:{part}"
    if not isinstance(obj, Pipeline):
        kind = "ZenML step" if isinstance(obj, BaseStep) else type(obj).__name__
        article = "an" if kind[0].lower() in "aeiou" else "a"
        raise PipelineRefError(f"{ref} is {article} {kind}, not a ZenML pipeline")
    return obj


def load_pipeline(ref: str, project_root: str) -> Pipeline:
    """Resolve ``ref`` against ``project_root`` (the launch child's entry point)."""
    module_name, _ = split_ref(ref)
    prepare_import_path(project_root)
    module = import_pipeline_module(module_name, project_root)
    return pipeline_from_module(module, ref)


# --------------------------------------------------------------------------
# Describing and validating
# --------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _type_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "Any"
    return inspect.formatannotation(annotation)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        pass
    try:
        from pydantic_core import to_jsonable_python

        return to_jsonable_python(value)
    except Exception:
        return None


def _validation_message(exc: BaseException | None) -> str:
    """First pydantic error message behind a ZenML validation failure."""
    from pydantic import ValidationError

    while exc is not None and not isinstance(exc, ValidationError):
        exc = exc.__cause__
    if exc is None:
        return ""
    errors = exc.errors()
    return errors[0]["msg"] if errors else str(exc)


def describe_parameters(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """Name, annotation, requiredness and default of each entrypoint parameter."""
    from zenml.steps.utils import get_resolved_signature

    described: dict[str, dict[str, Any]] = {}
    for name, param in get_resolved_signature(pipeline.entrypoint).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        required = param.default is inspect.Parameter.empty
        described[name] = {
            "type": _type_text(param.annotation),
            "required": required,
            "default": None if required else _jsonable(param.default),
        }
    return described


def _accepts_any_keyword(pipeline: Pipeline) -> bool:
    signature = inspect.signature(pipeline.entrypoint, follow_wrapped=True)
    return any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


class _Errors:
    """Collects errors; every check reports and carries on."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, path: Path_, message: str, kind: str) -> None:
        self.items.append({"path": list(path), "message": message, "kind": kind})


def _fresh_copy(value: Any) -> Any:
    """A JSON round-trip copy, so identity tells a passed-through parameter apart.

    Defaults are code constants that CPython may share with equal literals in
    the pipeline body; fresh objects make ``is`` a reliable wiring test.
    """
    try:
        copied = json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return value
    return copied if copied == value and type(copied) is type(value) else value


def check_pipeline_parameters(
    pipeline: Pipeline,
    given: Mapping[str, Any],
    path: Path_,
    errors: _Errors,
) -> dict[str, Any] | None:
    """Validate job parameters the way ``Pipeline.prepare`` will.

    Returns:
        Arguments usable for tracing the pipeline body (invalid ones dropped,
        defaults filled in), or None when a required parameter is missing.
    """
    from pydantic import ConfigDict, ValidationError
    from zenml.utils import pydantic_utils

    described = describe_parameters(pipeline)
    accepted = ", ".join(described) or "(none)"
    open_ended = _accepts_any_keyword(pipeline)
    usable: dict[str, Any] = {}
    for name, value in given.items():
        if name in described or open_ended:
            usable[name] = value
        else:
            errors.add(
                [*path, name],
                f"unknown parameter {name!r} for {pipeline.name}; accepted: {accepted}",
                kind="unknown",
            )

    missing = [n for n, d in described.items() if d["required"] and n not in usable]
    if missing:
        errors.add(
            path,
            f"missing required parameter(s) {', '.join(map(repr, missing))} for {pipeline.name}",
            kind="missing",
        )

    try:
        # Same call and config ZenML uses in Pipeline._validate_entrypoint_args.
        pydantic_utils.validate_function_args(pipeline.entrypoint, ConfigDict(arbitrary_types_allowed=False), **usable)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err.get("loc") or ()
            if err.get("type", "").startswith("missing") or not loc:
                continue
            name = str(loc[0])
            if name not in usable:
                continue
            expected = described.get(name, {}).get("type", "Any")
            errors.add(
                [*path, name],
                f"parameter {name!r} expects {expected}, got {usable[name]!r}: {err['msg']}",
                kind="type",
            )
            usable.pop(name)
    if missing:
        return None

    signature = inspect.signature(pipeline.entrypoint, follow_wrapped=True)
    for name, param in signature.parameters.items():
        if name not in usable and param.default is not inspect.Parameter.empty:
            usable[name] = param.default
    return {k: _fresh_copy(v) for k, v in usable.items()}


def trace_invocations(pipeline: Pipeline, arguments: Mapping[str, Any]) -> Pipeline:
    """Run the pipeline body in compilation mode on a copy and return the copy."""
    traced = pipeline.copy()
    traced.prepare(**arguments)
    return traced


def describe_steps(traced: Pipeline) -> dict[str, dict[str, list[str]]]:
    """Inputs of each step invocation, and which of them the body already passes."""
    return {
        inv_id: {
            "inputs": list(inv.step.entrypoint_definition.inputs),
            "wired": [k for k in inv.step.entrypoint_definition.inputs if k in _wired(inv)],
        }
        for inv_id, inv in traced.invocations.items()
    }


def _wired(invocation: StepInvocation) -> set[str]:
    return (
        set(invocation.parameters)
        | set(invocation.input_artifacts)
        | set(invocation.external_artifacts)
        | set(invocation.model_artifacts_or_metadata)
        | set(invocation.client_lazy_loaders)
    )


# Values the interpreter shares between unrelated expressions; identity with a
# pipeline parameter proves nothing for them unless the names also agree.
def _is_shared_constant(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -5 <= value <= 256
    return isinstance(value, str) and len(value) <= 1


def _source_parameter(traced: Pipeline, key: str, value: Any) -> str | None:
    """Name of the pipeline parameter the body passed on as ``value``, if any."""
    candidates = [n for n, v in traced._parameters.items() if v is value]
    if key in candidates:
        return key
    if len(candidates) == 1 and not _is_shared_constant(value):
        return candidates[0]
    return None


def _collision_message(traced: Pipeline, invocation: StepInvocation, key: str) -> str:
    step = invocation.id
    if key in invocation.input_artifacts:
        upstream = invocation.input_artifacts[key]
        artifacts = upstream if isinstance(upstream, list) else [upstream]
        origin = ", ".join(f"output {a.output_name!r} of step {a.invocation_id!r}" for a in artifacts)
        return (
            f"the pipeline body already passes {key!r} to step {step!r} "
            f"(from the {origin}); a step parameter cannot replace it"
        )
    if key not in invocation.parameters:
        return (
            f"the pipeline body already passes {key!r} to step {step!r} "
            "(from an external artifact); a step parameter cannot replace it"
        )
    source = _source_parameter(traced, key, invocation.parameters[key])
    if source is not None:
        return (
            f"the pipeline body already passes {key!r} to step {step!r} "
            f"(from pipeline parameter {source!r}), so ZenML rejects a different "
            f"value at run time; set parameters.{source} instead"
        )
    return (
        f"the pipeline body already passes {key!r} to step {step!r} "
        f"(a value fixed in the pipeline code: {invocation.parameters[key]!r}), "
        "so ZenML rejects a different value at run time"
    )


def check_steps(
    traced: Pipeline,
    steps: Mapping[str, Any],
    path: Path_,
    errors: _Errors,
) -> None:
    """Check configured step parameters against the traced invocations."""
    known = list(traced.invocations)
    for step_name, config in steps.items():
        step_path = [*path, step_name]
        invocation = traced.invocations.get(step_name)
        if invocation is None:
            errors.add(
                step_path,
                f"unknown step {step_name!r} in {traced.name}; its steps are: {', '.join(known) or '(none)'}",
                kind="unknown",
            )
            continue
        if not isinstance(config, Mapping):
            errors.add(step_path, 'expected a mapping like {"parameters": {...}}', kind="invalid")
            continue
        params = config.get("parameters") or {}
        if not isinstance(params, Mapping):
            errors.add([*step_path, "parameters"], "expected a mapping of input names to values", kind="invalid")
            continue
        _check_step_parameters(traced, invocation, params, [*step_path, "parameters"], errors)


def _check_step_parameters(
    traced: Pipeline,
    invocation: StepInvocation,
    params: Mapping[str, Any],
    path: Path_,
    errors: _Errors,
) -> None:
    definition = invocation.step.entrypoint_definition
    wired = _wired(invocation)
    for key, value in params.items():
        if key not in definition.inputs:
            errors.add(
                [*path, key],
                f"step {invocation.id!r} has no input {key!r}; "
                f"its inputs are: {', '.join(definition.inputs) or '(none)'}",
                kind="unknown",
            )
        elif key in wired:
            errors.add([*path, key], _collision_message(traced, invocation, key), kind="conflict")
        else:
            try:
                definition.validate_input(key=key, value=value)
            except Exception as exc:
                expected = _type_text(definition.inputs[key].annotation)
                detail = _validation_message(exc) or str(exc)
                errors.add(
                    [*path, key],
                    f"step input {key!r} of {invocation.id!r} expects {expected}, got {value!r}: {detail}",
                    kind="type",
                )


# --------------------------------------------------------------------------
# Request handling
# --------------------------------------------------------------------------


class _Checker:
    """Checks all jobs of one request; imports each module once."""

    def __init__(self, project_root: str) -> None:
        self.project_root = project_root
        self.errors = _Errors()
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
        self.pipelines[ref] = {"parameters": describe_parameters(pipeline), "steps": {}}
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
        if params is None:
            return
        arguments = check_pipeline_parameters(pipeline, params, [*path, "parameters"], self.errors)
        if arguments is None or pipeline.is_dynamic:
            # Without all required values (or for dynamic pipelines, whose steps
            # only exist at run time) the body cannot be traced.
            return
        try:
            traced = trace_invocations(pipeline, arguments)
        except Exception as exc:
            self.errors.add(
                [*path, "pipeline"],
                f"tracing the steps of {pipeline.name} with these parameters failed: {_describe(exc)}",
                kind="trace",
            )
            return
        known_steps = self.pipelines[ref]["steps"]
        for inv_id, info in describe_steps(traced).items():
            known_steps.setdefault(inv_id, info)
        if steps:
            check_steps(traced, steps, [*path, "steps"], self.errors)

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
    """Entry point: ``python -m scheduler.pipeline_check REQUEST.json [RESPONSE.json]``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print(
            "usage: python -m scheduler.pipeline_check REQUEST.json [RESPONSE.json]",
            file=sys.stderr,
        )
        return 2
    with open(args[0], encoding="utf-8") as fh:
        request = json.load(fh)
    with _stdout_to_stderr():
        response = check_request(request)
    text = json.dumps(response, default=repr)
    if len(args) == 2:
        _write_atomic(args[1], text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
