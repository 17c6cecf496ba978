"""`{upstream...}` templates of after jobs: what is refused at load, and how values are filled."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.config.upstream_templates import (
    TemplateError,
    has_template,
    reads_details,
    render,
    template_problems,
    upstream_template_paths,
)

VIEW: dict[str, Any] = {
    "status": "succeeded",
    "job": "drift-check",
    "pipeline": "drift_pipeline",
    "run_key": "drift-check@2026-03-01T12:00:00Z",
    "zenml_run_id": "0b6a2c3e-0000-4000-8000-000000000001",
    "zenml_run_name": None,
    "parameters": {"data_url": "data/train.csv", "limit": 10, "urls": ["a.csv", "b.csv"], "opts": {"k": True}},
    "metadata": {"drift_score": 0.31, "note": None, "0": "zero"},
    "steps": {"train": {"metadata": {"loss": 0.12}}},
    "artifacts": {"train": {"model": "5c1a"}},
    "duration_s": 42.5,
    "finished_at": "2026-03-01T12:00:42+00:00",
}


@pytest.mark.parametrize(
    ("parameters", "rendered"),
    [
        ({"url": "{upstream.parameters.data_url}"}, {"url": "data/train.csv"}),
        ({"n": "{upstream.parameters.limit}"}, {"n": 10}),  # a whole-value template keeps the type
        ({"score": "{upstream.metadata.drift_score}"}, {"score": 0.31}),
        ({"urls": "{upstream.parameters.urls}"}, {"urls": ["a.csv", "b.csv"]}),
        ({"opts": "{upstream.parameters.opts}"}, {"opts": {"k": True}}),
        ({"first": "{upstream.parameters.urls.0}"}, {"first": "a.csv"}),
        ({"zero": "{upstream.metadata.0}"}, {"zero": "zero"}),  # a key that is a number, in a mapping
        ({"note": "{upstream.metadata.note}"}, {"note": None}),
        ({"name": "{upstream.zenml_run_name}"}, {"name": None}),
        ({"msg": "score {upstream.metadata.drift_score} after {upstream.duration_s}s"},
         {"msg": "score 0.31 after 42.5s"}),
        ({"msg": "n={upstream.parameters.limit}"}, {"msg": "n=10"}),
        ({"msg": "{upstream.job}/{upstream.status}"}, {"msg": "drift-check/succeeded"}),
        ({"model": "{upstream.artifacts.train.model}"}, {"model": "5c1a"}),
        ({"loss": "{upstream.steps.train.metadata.loss}"}, {"loss": 0.12}),
        ({"lit": "{{upstream.status}}"}, {"lit": "{upstream.status}"}),
        ({"lit": "{{{upstream.status}}}"}, {"lit": "{succeeded}"}),
        ({"plain": "no braces", "num": 5, "none": None}, {"plain": "no braces", "num": 5, "none": None}),
        ({"deep": {"list": ["{upstream.status}", {"x": "{upstream.parameters.limit}"}]}},
         {"deep": {"list": ["succeeded", {"x": 10}]}}),
    ],
)  # fmt: skip
def test_render(parameters: dict[str, Any], rendered: dict[str, Any]) -> None:
    assert template_problems(parameters) == []
    assert render(parameters, VIEW) == rendered


def test_render_copies_values_and_leaves_the_input_alone() -> None:
    parameters = {"a": "{upstream.parameters.urls}", "b": "{upstream.parameters.urls}"}
    out = render(parameters, VIEW)
    out["a"].append("c.csv")
    assert out["b"] == ["a.csv", "b.csv"] and VIEW["parameters"]["urls"] == ["a.csv", "b.csv"]
    assert parameters == {"a": "{upstream.parameters.urls}", "b": "{upstream.parameters.urls}"}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"a": "{upstream.metadata.missing}"}, "{upstream.metadata.missing}: upstream.metadata has no 'missing'"),
        ({"a": "x{upstream.steps.deploy.metadata.ok}"}, "upstream.steps has no 'deploy' for this upstream run"),
        ({"a": "{upstream.parameters.urls.5}"}, "upstream.parameters.urls has no '5'"),
        ({"a": "{upstream.parameters.data_url.x}"}, "upstream.parameters.data_url is str for this upstream run"),
        ({"a": "{upstream.metadata.note.x}"}, "upstream.metadata.note is null for this upstream run"),
        ({"a": "note: {upstream.metadata.note}"}, "{upstream.metadata.note} is null for this upstream run, so it "
                                                  "cannot be written inside 'note: {upstream.metadata.note}'"),
        ({"a": ["{upstream.zenml_run_name}-x"]}, "{upstream.zenml_run_name} is null"),
        ({"a": "{upstream.bogus}"}, "unknown upstream field 'bogus'"),
    ],
)  # fmt: skip
def test_render_refuses_what_it_cannot_fill(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(parameters, VIEW)
    assert message in str(info.value)


def test_a_view_without_a_field_names_it() -> None:
    with pytest.raises(TemplateError, match="the upstream run has no 'metadata'"):
        render({"a": "{upstream.metadata.x}"}, {"status": "succeeded"})


@pytest.mark.parametrize(
    ("parameters", "problems"),
    [
        ({"a": "{upstream.status}", "b": "{{x}}", "c": 1}, []),
        ({"a": "{x}"}, [(("a",), "unknown template {x} in '{x}'; after: jobs fill {upstream.<field>} templates such "
                                  "as {upstream.parameters.data_url} (write {{ and }} for literal braces)")]),
        ({"a": "{}"}, [(("a",), "unknown template {} in '{}'")]),
        ({"a": "{upstream}"}, [(("a",), "{upstream} names no field: write {upstream.<field>} with one of status, ")]),
        ({"a": "{upstream.metdata.x}"}, [(("a",), "unknown upstream field 'metdata' in '{upstream.metdata.x}'; "
                                                  "did you mean metadata?")]),
        ({"a": "{upstream.status.x}"}, [(("a",), "template {upstream.status.x}: upstream.status is a single value")]),
        ({"a": "{upstream.parameters..x}"}, [(("a",), "write keys with dots")]),
        ({"a": "{upstream.parameters.urls[0]}"},
         [(("a",), "write keys with dots, as in {upstream.parameters.urls.0}")]),
        ({"a": "{upstream.status!r}"}, [(("a",), "format specs and conversions are not supported")]),
        ({"a": "{upstream.duration_s:.1f}s"}, [(("a",), "format specs and conversions are not supported")]),
        ({"a": "}"}, [(("a",), "bad template '}': Single '}' encountered")]),
        ({"n": {"deep": [1, "{upstream.job}", "{nope}"]}}, [(("n", "deep", 2), "unknown template {nope}")]),
    ],
)  # fmt: skip
def test_template_problems(parameters: dict[str, Any], problems: list[tuple[tuple[Any, ...], str]]) -> None:
    found = template_problems(parameters)
    assert [key for key, _ in found] == [key for key, _ in problems]
    for (_, message), (_, expected) in zip(found, problems, strict=True):
        assert message.startswith(expected) or expected in message, message


@pytest.mark.parametrize(
    ("parameters", "details"),
    [
        ({}, False),
        ({"a": "{upstream.parameters.x}", "b": "{upstream.status}"}, False),
        ({"a": "{{upstream.metadata.x}}"}, False),  # literal braces read nothing
        ({"a": "x-{upstream.metadata.x}"}, True),
        ({"a": ["{upstream.steps.train.metadata.loss}"]}, True),
        ({"a": {"b": "{upstream.artifacts.train.model}"}}, True),
        ({"a": "{metadata.x}"}, False),
    ],
)
def test_reads_details(parameters: dict[str, Any], details: bool) -> None:
    assert reads_details(parameters) is details


@pytest.mark.parametrize(
    ("parameters", "paths"),
    [
        ({"a": "{x}", "b": "{", "c": "{{upstream.x}}"}, []),
        ({"a": "{upstream.status}", "b": ["ok", "in/{upstream.parameters.x}"]}, [("a",), ("b", 1)]),
    ],
)
def test_upstream_template_paths(parameters: dict[str, Any], paths: list[tuple[Any, ...]]) -> None:
    assert upstream_template_paths(parameters) == paths


@pytest.mark.parametrize(
    ("value", "templated"),
    [("x", False), (5, False), ("{upstream.status}", True), ("{{", True), (["a", {"b": "}}"}], True), ({}, False)],
)
def test_has_template(value: Any, templated: bool) -> None:
    assert has_template(value) is templated
