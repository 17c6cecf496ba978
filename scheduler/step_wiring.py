"""Trace a pipeline body and check configured step parameters against it.

Tracing runs the body with ``Pipeline.prepare`` (the compilation pass a run
starts with), which records each step invocation and what the body passes to
it, in memory only. A configured step parameter is only usable for an input
the body leaves open; for the others this module explains where the value
already comes from, because ZenML's own run-time error does not.

Part of the ``scheduler.pipeline_check`` child; ZenML is imported lazily.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

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


def check_steps(traced: Pipeline, steps: Mapping[str, Any], path: list[str]) -> Iterator[StepProblem]:
    """Check configured step parameters against the traced invocations."""
    known = list(traced.invocations)
    for step_name, config in steps.items():
        step_path = [*path, step_name]
        invocation = traced.invocations.get(step_name)
        if invocation is None:
            yield StepProblem(
                step_path,
                f"unknown step {step_name!r} in {traced.name}; its steps are: {', '.join(known) or '(none)'}",
                kind="unknown",
            )
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
            yield StepProblem(
                [*path, key],
                f"step {invocation.id!r} has no input {key!r}; "
                f"its inputs are: {', '.join(definition.inputs) or '(none)'}",
                kind="unknown",
            )
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
