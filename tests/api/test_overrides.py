"""API overrides: the `api.overridable` schema, and checking request bodies without ZenML (tables).

The pipeline descriptions here are shaped like the pipeline check's RESPONSE (tests/test_pipeline_check.py
checks the real one); the checker itself is replaced by a stand-in script that answers with them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scheduler.api.overrides import OverrideError, Overrides, resolve_overrides
from scheduler.api.tutorial import jobs_for_pipeline, tutorial_body, tutorial_overrides
from scheduler.cli.run import load_checked
from scheduler.config.loader import load_config
from scheduler.config.model import Config
from scheduler.config.settings import Settings
from scheduler.daemon.reloader import Reloader
from scheduler.errors import ConfigError
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.launch_spec import launch_spec
from scheduler.runs.preflight import check_request, run_pipeline_check

TRAINING = "pipelines.training:training_pipeline"
SCORING = "pipelines.batch_inference:batch_inference_pipeline"

CONFIG = f"""\
version: 1
jobs:
  train:
    pipeline: {TRAINING}
    every: 1h
    steps:
      preprocess: {{parameters: {{random_state: 7}}}}
    api:
      overridable:
        - parameters.model_type
        - parameters.n_estimators
        - parameters.ids
        - parameters.anything
        - parameters.data_url
        - steps.preprocess.parameters.test_size
  locked:
    pipeline: {TRAINING}
    every: 1h
  score:
    pipeline: {SCORING}
    every: 1h
"""

STRING = {"type": "string"}
DESCRIPTION: dict[str, Any] = {
    "name": "training_pipeline",
    "parameters": {
        "data_url": {"type": "str", "required": False, "default": "data/train.csv", "schema": STRING},
        "model_type": {"type": "str", "required": False, "default": "random_forest", "schema": STRING},
        "n_estimators": {"type": "int", "required": False, "default": 100, "schema": {"type": "integer"}},
        "ids": {
            "type": "list[int] | None",
            "required": False,
            "default": None,
            "schema": {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]},
        },
        "anything": {"type": "Any", "required": False, "default": None, "schema": {}},
    },
    "steps": {
        "load_data": {
            "inputs": ["data_url"],
            "wired": ["data_url"],
            "schemas": {"data_url": STRING},
            "from_parameter": {"data_url": "data_url"},
        },
        "preprocess": {
            "inputs": ["df", "test_size", "random_state"],
            "wired": ["df"],
            "schemas": {"df": {}, "test_size": {"type": "number"}, "random_state": {"type": "integer"}},
            "from_parameter": {},
        },
        "train_model": {
            "inputs": ["X_train", "model_type", "seed"],
            "wired": ["X_train", "model_type", "seed"],
            "schemas": {"X_train": {}, "model_type": STRING, "seed": {"type": "integer"}},
            "from_parameter": {"model_type": "model_type", "seed": "n_estimators"},
        },
    },
}
SCORING_DESCRIPTION: dict[str, Any] = {"name": "batch_inference_pipeline", "parameters": {}, "steps": {}}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "schedules.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return dataclasses.replace(load_config(path), pipelines={TRAINING: DESCRIPTION, SCORING: SCORING_DESCRIPTION})


def problems_of(call: Any) -> list[tuple[list[Any], str]]:
    with pytest.raises(OverrideError) as info:
        call()
    return [(list(p.loc), p.msg) for p in info.value.problems]


# ---- schedules.yaml ---------------------------------------------------------------------------


def config_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "schedules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [f"{p.line}:{p.column}: {p.message}" for p in info.value.problems]


def test_an_overridable_entry_of_neither_form_is_reported_at_the_entry(tmp_path: Path) -> None:
    text = f"""\
version: 1
jobs:
  train:
    pipeline: {TRAINING}
    every: 1h
    api:
      overridable: [parameters.model_type, model_type, steps.load_data.data_url]
      public: true
"""
    forms = "'parameters.<name>' (a pipeline parameter) or 'steps.<step>.parameters.<name>' (a step input)"
    assert config_problems(tmp_path, text) == [
        f"7:44: api.overridable.1: expected {forms}, got 'model_type'",
        f"7:56: api.overridable.2: expected {forms}, got 'steps.load_data.data_url'",
        "8:7: unknown key 'public'",
    ]


def test_api_may_be_a_default_and_a_job_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(
        f"""\
version: 1
defaults:
  api: {{overridable: [parameters.model_type]}}
jobs:
  a: {{pipeline: "{TRAINING}", every: 1h}}
  b: {{pipeline: "{TRAINING}", every: 1h, api: {{overridable: [parameters.data_url]}}}}
""",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.jobs["a"].spec.api.overridable == ["parameters.model_type"]
    assert config.jobs["b"].spec.api.overridable == ["parameters.data_url"]
    assert config.pipeline_description("a") is None  # not checked


def test_without_api_nothing_is_overridable(config: Config) -> None:
    assert config.jobs["locked"].spec.api.overridable == []
    assert config.pipeline_description("train") is DESCRIPTION
    assert config.pipeline_description("nope") is None


# ---- resolve_overrides ------------------------------------------------------------------------

ACCEPTED: list[tuple[dict[str, Any], Overrides]] = [
    ({}, Overrides()),
    ({"parameters": {}, "steps": {}}, Overrides()),
    ({"parameters": {"model_type": "gradient_boosting"}}, Overrides({"model_type": "gradient_boosting"})),
    ({"parameters": {"n_estimators": 5, "ids": None}}, Overrides({"n_estimators": 5, "ids": None})),
    ({"parameters": {"n_estimators": 5.0}}, Overrides({"n_estimators": 5.0})),  # JSON Schema: 5.0 is an integer
    ({"parameters": {"ids": [1, 2]}}, Overrides({"ids": [1, 2]})),
    ({"parameters": {"anything": {"x": [1]}}}, Overrides({"anything": {"x": [1]}})),
    ({"steps": {"preprocess": {"parameters": {"test_size": 0.3}}}}, Overrides({}, {"preprocess": {"test_size": 0.3}})),
    ({"steps": {"preprocess": {"parameters": {"test_size": 1}}}}, Overrides({}, {"preprocess": {"test_size": 1}})),
    ({"steps": {"preprocess": {}}}, Overrides()),
]


@pytest.mark.parametrize(("body", "expected"), ACCEPTED)
def test_accepted_bodies(config: Config, body: dict[str, Any], expected: Overrides) -> None:
    assert resolve_overrides(config.jobs["train"], DESCRIPTION, body) == expected


ALLOWED = (
    "job 'train' allows only: parameters.model_type, parameters.n_estimators, parameters.ids, "
    "parameters.anything, parameters.data_url, steps.preprocess.parameters.test_size"
)
REFUSED: list[tuple[Any, list[tuple[list[Any], str]]]] = [
    ([1], [(["body"], "body: expected an object with 'parameters' and/or 'steps', got [1] (list)")]),
    (
        {"parameters": {"n_estimators": "ten"}, "pipeline_name": "x"},
        [
            (["body", "pipeline_name"], "unknown field 'pipeline_name'; allowed: parameters, steps"),
            (["body", "parameters", "n_estimators"], "parameters.n_estimators: expected integer, got 'ten' (str)"),
        ],
    ),
    (
        {"parameters": {"n_estimators": True, "model_type": None}},
        [
            (["body", "parameters", "n_estimators"], "parameters.n_estimators: expected integer, got True (bool)"),
            (["body", "parameters", "model_type"], "parameters.model_type: expected string, got null"),
        ],
    ),
    (
        {"parameters": {"ids": [1, "2", 3, "x"]}},
        [
            (
                ["body", "parameters", "ids"],
                "parameters.ids: expected array of integer or null, got [1, '2', 3, 'x'] (list)",
            )
        ],
    ),
    (
        {"parameters": {"test_size": 0.5}},
        [(["body", "parameters", "test_size"], f"parameters.test_size may not be overridden: {ALLOWED}")],
    ),
    (
        {"parameters": ["model_type"]},
        [
            (
                ["body", "parameters"],
                "parameters: expected an object of parameter names to values, got ['model_type'] (list)",
            )
        ],
    ),
    (
        {"steps": {"preprocess": {"parameters": {"test_size": "big", "random_state": 1}, "enable_cache": False}}},
        [
            (["body", "steps", "preprocess", "enable_cache"], "unknown field 'enable_cache'; allowed: parameters"),
            (
                ["body", "steps", "preprocess", "parameters", "test_size"],
                "steps.preprocess.parameters.test_size: expected number, got 'big' (str)",
            ),
            (
                ["body", "steps", "preprocess", "parameters", "random_state"],
                f"steps.preprocess.parameters.random_state may not be overridden: {ALLOWED}",
            ),
        ],
    ),
    (
        {"steps": {"load_data": {"parameters": {"data_url": "x.csv"}}, "preprocess": 3}},
        [
            (
                ["body", "steps", "preprocess"],
                'steps.preprocess: expected an object like {"parameters": {...}}, got 3 (int)',
            ),
            (
                ["body", "steps", "load_data", "parameters", "data_url"],
                f"steps.load_data.parameters.data_url may not be overridden: {ALLOWED}",
            ),
        ],
    ),
    (
        {"steps": []},
        [(["body", "steps"], 'steps: expected an object like {"<step>": {"parameters": {...}}}, got [] (list)')],
    ),
]


@pytest.mark.parametrize(("body", "expected"), REFUSED)
def test_refused_bodies_list_every_problem(config: Config, body: Any, expected: list[tuple[list[Any], str]]) -> None:
    assert problems_of(lambda: resolve_overrides(config.jobs["train"], DESCRIPTION, body)) == expected


def test_a_job_without_api_allows_nothing(config: Config) -> None:
    found = problems_of(
        lambda: resolve_overrides(config.jobs["locked"], DESCRIPTION, {"parameters": {"model_type": "x"}})
    )
    assert found == [
        (
            ["body", "parameters", "model_type"],
            "parameters.model_type may not be overridden: "
            "job 'locked' allows no overrides (its api.overridable is empty)",
        )
    ]


def test_without_a_description_allowed_values_are_unchecked(config: Config) -> None:
    job = config.jobs["train"]
    body = {"parameters": {"n_estimators": "ten"}, "steps": {"preprocess": {"parameters": {"test_size": "big"}}}}
    assert resolve_overrides(job, None, body) == Overrides(
        {"n_estimators": "ten"}, {"preprocess": {"test_size": "big"}}
    )
    found = problems_of(lambda: resolve_overrides(job, None, {"parameters": {"nope": 1}}))
    assert found == [(["body", "parameters", "nope"], f"parameters.nope may not be overridden: {ALLOWED}")]


def test_error_detail_is_json_ready(config: Config) -> None:
    with pytest.raises(OverrideError) as info:
        resolve_overrides(config.jobs["train"], DESCRIPTION, {"parameters": {"ids": [1, "x"]}})
    assert json.loads(json.dumps([p.as_dict() for p in info.value.problems])) == [
        {
            "loc": ["body", "parameters", "ids"],
            "msg": "parameters.ids: expected array of integer or null, got [1, 'x'] (list)",
            "type": "type_error",
        }
    ]


# ---- the launch side --------------------------------------------------------------------------


def test_step_overrides_merge_into_the_launch_spec(config: Config) -> None:
    job = config.jobs["train"]
    assert FireRequest("train", "manual", "k", "api").steps == {}
    assert launch_spec(job, {})["steps"] == {"preprocess": {"parameters": {"random_state": 7}}}
    spec = launch_spec(job, {"model_type": "x"}, {"preprocess": {"test_size": 0.3}, "evaluate": {"k": 1}})
    assert spec["parameters"] == {"model_type": "x"}
    assert spec["steps"] == {
        "preprocess": {"parameters": {"random_state": 7, "test_size": 0.3}},
        "evaluate": {"parameters": {"k": 1}},
    }
    assert job.spec.steps["preprocess"].parameters == {"random_state": 7}  # the job is not changed


# ---- /trigger ---------------------------------------------------------------------------------


def test_jobs_for_pipeline_by_zenml_name_or_attribute(config: Config) -> None:
    assert jobs_for_pipeline(config, "training_pipeline") == ["train", "locked"]
    assert jobs_for_pipeline(config, "batch_inference_pipeline") == ["score"]
    assert jobs_for_pipeline(config, "nope") == []
    renamed = dataclasses.replace(config, pipelines={TRAINING: {**DESCRIPTION, "name": "trainer"}})
    assert jobs_for_pipeline(renamed, "trainer") == ["train", "locked"]
    assert jobs_for_pipeline(renamed, "batch_inference_pipeline") == ["score"]  # no description: the attribute
    unchecked = dataclasses.replace(config, pipelines={})
    assert jobs_for_pipeline(unchecked, "training_pipeline") == ["train", "locked"]


MAPPED: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, {"parameters": {}, "steps": {}}),
    (
        {"load_data": {"parameters": {"data_url": "s3://x.csv"}}},
        {"parameters": {"data_url": "s3://x.csv"}, "steps": {}},
    ),
    (
        {"preprocess": {"parameters": {"test_size": 0.4}}, "train_model": {"parameters": {"model_type": "rf"}}},
        {"parameters": {"model_type": "rf"}, "steps": {"preprocess": {"parameters": {"test_size": 0.4}}}},
    ),
]


@pytest.mark.parametrize(("steps", "expected"), MAPPED)
def test_tutorial_steps_map_to_a_canonical_body(
    config: Config, steps: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert tutorial_body(config.jobs["train"], DESCRIPTION, steps) == expected


def test_tutorial_steps_that_cannot_be_applied(config: Config) -> None:
    steps = {
        "nope": {"parameters": {"x": 1}},
        "preprocess": {"parameters": {"df": 1, "zzz": 2}},
        "train_model": {"parameters": {"seed": 3, "X_train": 4}},
    }
    base = ["body", "steps"]
    assert problems_of(lambda: tutorial_body(config.jobs["train"], DESCRIPTION, steps)) == [
        (
            [*base, "nope", "parameters", "x"],
            "steps.nope.parameters.x: unknown step 'nope' in job 'train'; "
            "its steps are: load_data, preprocess, train_model",
        ),
        (
            [*base, "preprocess", "parameters", "df"],
            "steps.preprocess.parameters.df: cannot be applied: the pipeline passes input 'df' of step 'preprocess' "
            "itself (from another step or a value fixed in the pipeline code, so no request can set it)",
        ),
        (
            [*base, "preprocess", "parameters", "zzz"],
            "steps.preprocess.parameters.zzz: step 'preprocess' has no input 'zzz'; "
            "its inputs are: df, test_size, random_state",
        ),
        (
            [*base, "train_model", "parameters", "seed"],
            "steps.train_model.parameters.seed: cannot be applied: the pipeline passes input 'seed' of step "
            "'train_model' itself (from pipeline parameter 'n_estimators'; set parameters.n_estimators instead "
            "(POST /v1/jobs/<job>/runs))",
        ),
        (
            [*base, "train_model", "parameters", "X_train"],
            "steps.train_model.parameters.X_train: cannot be applied: the pipeline passes input 'X_train' of step "
            "'train_model' itself (from another step or a value fixed in the pipeline code, so no request can set it)",
        ),
    ]


def test_tutorial_overrides_validate_where_the_caller_put_the_value(config: Config) -> None:
    job = config.jobs["train"]
    steps = {"load_data": {"parameters": {"data_url": "s3://x.csv"}}, "preprocess": {"parameters": {"test_size": 0.4}}}
    assert tutorial_overrides(job, DESCRIPTION, steps) == Overrides(
        {"data_url": "s3://x.csv"}, {"preprocess": {"test_size": 0.4}}
    )
    bad = {"load_data": {"parameters": {"data_url": 5}}, "preprocess": {"parameters": {"random_state": 1}}, "x": 1}
    assert problems_of(lambda: tutorial_overrides(job, DESCRIPTION, bad)) == [
        (["body", "steps", "x"], 'steps.x: expected an object like {"parameters": {...}}, got 1 (int)'),
        (
            ["body", "steps", "load_data", "parameters", "data_url"],
            "parameters.data_url: expected string, got 5 (int) "
            "(the request's steps.load_data.parameters.data_url, applied as parameters.data_url)",
        ),
        (
            ["body", "steps", "preprocess", "parameters", "random_state"],
            f"steps.preprocess.parameters.random_state may not be overridden: {ALLOWED}",
        ),
    ]
    locked = problems_of(lambda: tutorial_overrides(config.jobs["locked"], DESCRIPTION, steps))
    assert [loc for loc, _ in locked] == [
        ["body", "steps", "load_data", "parameters", "data_url"],
        ["body", "steps", "preprocess", "parameters", "test_size"],
    ]


def test_tutorial_without_a_description_follows_the_allow_list(config: Config) -> None:
    steps = {"load_data": {"parameters": {"data_url": "x.csv"}}, "preprocess": {"parameters": {"test_size": "big"}}}
    assert tutorial_overrides(config.jobs["train"], None, steps) == Overrides(
        {"data_url": "x.csv"}, {"preprocess": {"test_size": "big"}}
    )


def test_two_steps_setting_one_parameter_differently_conflict(config: Config) -> None:
    description = {**DESCRIPTION, "steps": {**DESCRIPTION["steps"]}}
    description["steps"]["reload"] = {**DESCRIPTION["steps"]["load_data"]}
    same = {"load_data": {"parameters": {"data_url": "a"}}, "reload": {"parameters": {"data_url": "a"}}}
    assert tutorial_body(config.jobs["train"], description, same)["parameters"] == {"data_url": "a"}
    different = {"load_data": {"parameters": {"data_url": "a"}}, "reload": {"parameters": {"data_url": "b"}}}
    assert problems_of(lambda: tutorial_body(config.jobs["train"], description, different)) == [
        (
            ["body", "steps", "reload", "parameters", "data_url"],
            "steps.reload.parameters.data_url: "
            "sets pipeline parameter 'data_url' to another value than steps.load_data does",
        )
    ]


# ---- the daemon gets the descriptions (checker stand-in) --------------------------------------


def fake_checker(tmp_path: Path, answer: dict[str, Any]) -> str:
    """An interpreter stand-in whose `-m scheduler.child.check REQ RESP` answers `answer`."""
    script = tmp_path / "fake-python"
    script.write_text(
        f"#!{sys.executable}\nimport json, shutil, sys\n"
        f"shutil.copy(sys.argv[3], sys.argv[3] + '.seen')\n"
        f"open(sys.argv[4], 'w').write(json.dumps({answer!r}))\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return str(script)


def test_checked_configs_carry_descriptions(config: Config, tmp_path: Path) -> None:
    python = fake_checker(tmp_path, {"errors": [], "pipelines": {TRAINING: DESCRIPTION}})
    checked = load_checked(Settings(config=config.path, python=python))
    assert checked.pipeline_description("train") == DESCRIPTION
    assert checked.pipeline_description("score") is None
    assert load_checked(Settings(config=config.path, python=python), check=False).pipelines == {}
    assert check_request(config)["jobs"]["train"]["overridable"] == config.jobs["train"].spec.api.overridable
    assert check_request(config)["jobs"]["locked"]["overridable"] == []

    reloader = Reloader(config.path, python, check_pipelines=True)
    reloader.begin("test")
    deadline = time.monotonic() + 30
    while (result := reloader.result()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert result is not None
    reloaded = result[1]
    assert isinstance(reloaded, Config)
    assert reloaded.pipeline_description("train") == DESCRIPTION


def test_errors_in_an_inherited_api_are_shown_in_defaults(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(
        f"""\
version: 1
defaults:
  api:
    overridable: [parameters.model_type, parameters.nope]
jobs:
  a: {{pipeline: "{TRAINING}", every: 1h}}
""",
        encoding="utf-8",
    )
    error = {"path": ["jobs", "a", "api", "overridable", 1], "message": "unknown parameter 'nope'", "kind": "unknown"}
    python = fake_checker(tmp_path, {"errors": [error], "pipelines": {}})
    found = run_pipeline_check(load_config(path), python)
    assert [str(p) for p in found.problems] == [f"{path}:4:42: job 'a': unknown parameter 'nope'"]
