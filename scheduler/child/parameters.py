"""Describe a pipeline's entrypoint parameters and check job parameters against them.

Part of the ``scheduler.child.check`` child; ZenML is imported lazily.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from scheduler.child.step_wiring import annotation_text, json_schema_of

if TYPE_CHECKING:
    from zenml.pipelines.pipeline_definition import Pipeline

Path_ = list[str]


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


def describe_parameters(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """Name, annotation, requiredness, default and JSON Schema of each entrypoint parameter."""
    from zenml.steps.utils import get_resolved_signature

    described: dict[str, dict[str, Any]] = {}
    for name, param in get_resolved_signature(pipeline.entrypoint).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        required = param.default is inspect.Parameter.empty
        described[name] = {
            "type": annotation_text(param.annotation),
            "required": required,
            "default": None if required else _jsonable(param.default),
            "schema": json_schema_of(param.annotation),
        }
    return described


def accepts_any_keyword(pipeline: Pipeline) -> bool:
    signature = inspect.signature(pipeline.entrypoint, follow_wrapped=True)
    return any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


class Errors:
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
    described: Mapping[str, Mapping[str, Any]],
    given: Mapping[str, Any],
    path: Path_,
    errors: Errors,
    deferred: Collection[str] = (),
) -> dict[str, Any] | None:
    """Validate job parameters the way ``Pipeline.prepare`` will; `described` is
    `describe_parameters(pipeline)`, computed once per pipeline by the caller.
    `deferred` parameters get their values only at run time (an after job's templates): they
    must exist, but their type is checked then, and a required one is not missing.

    Returns:
        Arguments usable for tracing the pipeline body (invalid ones dropped,
        defaults filled in), or None when a required parameter is missing or deferred.
    """
    from pydantic import ConfigDict, ValidationError
    from zenml.utils import pydantic_utils

    accepted = ", ".join(described) or "(none)"
    open_ended = accepts_any_keyword(pipeline)
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

    waiting = [name for name in deferred if name in usable]
    for name in waiting:
        usable.pop(name)
    missing = [n for n, d in described.items() if d["required"] and n not in usable and n not in waiting]
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
    if missing or any(described.get(name, {}).get("required") for name in waiting):
        return None  # the body cannot be traced without them

    signature = inspect.signature(pipeline.entrypoint, follow_wrapped=True)
    for name, param in signature.parameters.items():
        if name not in usable and param.default is not inspect.Parameter.empty:
            usable[name] = param.default
    return {k: _fresh_copy(v) for k, v in usable.items()}
