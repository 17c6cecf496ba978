"""Trace a pipeline body and check configured step parameters (and the step
inputs a job's ``api.overridable`` lists) against it.

Tracing runs the body with ``Pipeline.prepare`` (the compilation pass a run
starts with), which records each step invocation and what the body passes to
it, in memory only. A configured step parameter is only usable for an input
the body leaves open; for the others this module explains where the value
already comes from, because ZenML's own run-time error does not.

Part of the ``scheduler.child.check`` child; ZenML is imported lazily.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from scheduler.config.job_spec import OVERRIDE_FORMS, parse_override_key

if TYPE_CHECKING:
    from zenml.pipelines.pipeline_definition import Pipeline
    from zenml.steps.step_invocation import StepInvocation


class StepProblem(NamedTuple):
    """One error in a job's step configuration, in the check's response terms."""

    path: list[str]
    message: str
    kind: str


def annotation_text(annotation: Any) -> str:
    """How the check names a parameter's annotation; a missing one reads ``Any``."""
    if annotation is inspect.Parameter.empty:
        return "Any"
    return inspect.formatannotation(annotation)


def _validation_message(exc: BaseException | None) -> str:
    """First pydantic error message behind a ZenML validation failure."""
    from pydantic import ValidationError

    while exc is not None and not isinstance(exc, ValidationError):
        exc = exc.__cause__
    if exc is None:
        return ""
    errors = exc.errors()
    return errors[0]["msg"] if errors else str(exc)


def trace_invocations(pipeline: Pipeline, arguments: Mapping[str, Any]) -> Pipeline:
    """Run the pipeline body in compilation mode on a copy and return the copy."""
    traced = pipeline.copy()
    traced.prepare(**arguments)
    return traced


def json_schema_of(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of the values ``annotation`` accepts, as pydantic generates it.

    ``{}`` (any JSON value) for a missing annotation, ``Any``, or a type pydantic cannot express
    as JSON Schema (a DataFrame, an arbitrary class): the daemon then accepts any value for it.
    """
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(annotation).json_schema()
    except Exception:  # schema generation fails in many ways for arbitrary user types
        return {}


def describe_steps(traced: Pipeline) -> dict[str, dict[str, Any]]:
    """Per step invocation: its inputs, which of them the body already passes ("wired"), the JSON
    Schema of each input ("schemas") and, for inputs passed straight from a pipeline parameter,
    that parameter's name ("from_parameter")."""
    described: dict[str, dict[str, Any]] = {}
    for inv_id, inv in traced.invocations.items():
        inputs = inv.step.entrypoint_definition.inputs
        wired = _wired(inv)
        sources = {key: _source_parameter(traced, key, value) for key, value in inv.parameters.items()}
        described[inv_id] = {
            "inputs": list(inputs),
            "wired": [k for k in inputs if k in wired],
            "schemas": {k: json_schema_of(p.annotation) for k, p in inputs.items()},
            "from_parameter": {k: source for k, source in sources.items() if source is not None},
        }
    return described


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


def _collision_message(
    traced: Pipeline, invocation: StepInvocation, key: str, fix: str = "set parameters.{source} instead"
) -> str:
    """Where the body's value for ``key`` comes from; ``fix`` (formatted with the source
    parameter's name) is the advice when that is a pipeline parameter."""
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
            f"value at run time; {fix.format(source=source)}"
        )
    return (
        f"the pipeline body already passes {key!r} to step {step!r} "
        f"(a value fixed in the pipeline code: {invocation.parameters[key]!r}), "
        "so ZenML rejects a different value at run time"
    )


def check_steps(traced: Pipeline, steps: Mapping[str, Any], path: list[str]) -> Iterator[StepProblem]:
    """Check configured step parameters against the traced invocations."""
    for step_name, config in steps.items():
        step_path = [*path, step_name]
        invocation = traced.invocations.get(step_name)
        if invocation is None:
            yield StepProblem(step_path, _unknown_step(traced, step_name), kind="unknown")
            continue
        if not isinstance(config, Mapping):
            yield StepProblem(step_path, 'expected a mapping like {"parameters": {...}}', kind="invalid")
            continue
        params = config.get("parameters") or {}
        if not isinstance(params, Mapping):
            yield StepProblem([*step_path, "parameters"], "expected a mapping of input names to values", kind="invalid")
            continue
        yield from _check_step_parameters(traced, invocation, params, [*step_path, "parameters"])


def _check_step_parameters(
    traced: Pipeline,
    invocation: StepInvocation,
    params: Mapping[str, Any],
    path: list[str],
) -> Iterator[StepProblem]:
    definition = invocation.step.entrypoint_definition
    wired = _wired(invocation)
    for key, value in params.items():
        if key not in definition.inputs:
            yield StepProblem([*path, key], _unknown_input(invocation, key), kind="unknown")
        elif key in wired:
            yield StepProblem([*path, key], _collision_message(traced, invocation, key), kind="conflict")
        else:
            try:
                definition.validate_input(key=key, value=value)
            except Exception as exc:
                expected = annotation_text(definition.inputs[key].annotation)
                detail = _validation_message(exc) or str(exc)
                yield StepProblem(
                    [*path, key],
                    f"step input {key!r} of {invocation.id!r} expects {expected}, got {value!r}: {detail}",
                    kind="type",
                )


def _unknown_step(traced: Pipeline, step: str) -> str:
    return f"unknown step {step!r} in {traced.name}; its steps are: {', '.join(traced.invocations) or '(none)'}"


def _unknown_input(invocation: StepInvocation, key: str) -> str:
    inputs = invocation.step.entrypoint_definition.inputs
    return f"step {invocation.id!r} has no input {key!r}; its inputs are: {', '.join(inputs) or '(none)'}"


def check_overridable(
    entries: Sequence[Any],
    parameters: Collection[str],
    open_ended: bool,
    pipeline_name: str,
    traced: Pipeline | None,
    path: list[Any],
) -> Iterator[StepProblem]:
    """Check a job's ``api.overridable`` entries (``path`` is that list) against its pipeline.

    ``parameters.<name>`` must name one of ``parameters`` (any name when the entrypoint takes
    ``**kwargs``: ``open_ended``); ``steps.<step>.parameters.<input>`` must name a traced step and
    an input of it that the body leaves open, else ZenML would reject every override of it. Step
    entries go unchecked when the body could not be traced (``traced`` is None).
    """
    for index, entry in enumerate(entries):
        where = [*path, index]
        parsed = parse_override_key(entry)
        if parsed is None:
            yield StepProblem(where, f"expected {OVERRIDE_FORMS}, got {entry!r}", kind="invalid")
            continue
        step, key = parsed
        if step is None:
            if key not in parameters and not open_ended:
                accepted = ", ".join(parameters) or "(none)"
                yield StepProblem(
                    where, f"unknown parameter {key!r} for {pipeline_name}; accepted: {accepted}", "unknown"
                )
            continue
        if traced is None:
            continue
        invocation = traced.invocations.get(step)
        if invocation is None:
            yield StepProblem(where, _unknown_step(traced, step), kind="unknown")
        elif key not in invocation.step.entrypoint_definition.inputs:
            yield StepProblem(where, _unknown_input(invocation, key), kind="unknown")
        elif key in _wired(invocation):
            fix = "list parameters.{source} in api.overridable instead"
            yield StepProblem(where, _collision_message(traced, invocation, key, fix), kind="conflict")
