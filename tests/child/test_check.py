"""The pipeline checker as a real subprocess: every error kind, by exact path."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from scheduler.api.overrides import OverrideError, Overrides, resolve_overrides
from scheduler.api.tutorial import tutorial_overrides
from scheduler.child.store_setup import MARKER_FILE
from scheduler.config.loader import load_config
from scheduler.runs.preflight import run_pipeline_check
from tests import zenml_env

pytestmark = pytest.mark.slow

TINY = "tinypipes.tiny:tiny_pipeline"
STEP_PARAM = "tinypipes.tiny:tiny_with_step_param"
TRAINING = "pipelines.training:training_pipeline"
RECORDS = ("pipeline", "pipeline_snapshot", "pipeline_run", "step_run", "artifact_version")

CLEAN_JOBS: dict[str, Any] = {
    # "5" -> 5.0 is the same lax coercion ZenML applies.
    "clean_tiny": {"pipeline": TINY, "parameters": {"label": "x", "sleep_s": "5"}},
    "clean_training": {
        "pipeline": TRAINING,
        "parameters": {"data_url": "data/train.csv", "model_type": "gradient_boosting"},
        "steps": {"preprocess": {"parameters": {"test_size": 0.3, "random_state": 7}}},
    },
    "clean_step_param": {
        "pipeline": STEP_PARAM,
        "parameters": {"value": 3},
        "steps": {"scale": {"parameters": {"factor": "7"}}},
    },
}

BROKEN_JOBS: dict[str, Any] = {
    "malformed": {"pipeline": "tinypipes/tiny.py"},
    "missing_module": {"pipeline": "tinypipes.nope:tiny_pipeline"},
    "import_raises": {"pipeline": "brokenpipes.raises:pipe"},
    "missing_dependency": {"pipeline": "brokenpipes.missing_dep:pipe"},
    "no_attribute": {"pipeline": "tinypipes.tiny:nothing_here"},
    "not_a_pipeline": {"pipeline": "tinypipes.tiny:NOT_A_PIPELINE"},
    "counted_a": {"pipeline": "countpipes.once:tiny_pipeline"},
    "counted_b": {"pipeline": "countpipes.once:tiny_pipeline"},
    "counted_c": {"pipeline": "countpipes.once:absent"},
    "bad_params": {"pipeline": TINY, "parameters": {"bogus": 1, "sleep_s": "abc"}},
    "missing_required": {"pipeline": STEP_PARAM, "parameters": {}},
    # an after job's templates: filled from the upstream run, type-checked then
    "deferred_typed": {"pipeline": TINY, "parameters": {"sleep_s": "{upstream.metadata.s}"}, "deferred": ["sleep_s"]},
    "deferred_required": {
        "pipeline": STEP_PARAM,
        "parameters": {"value": "{upstream.metadata.v}"},
        "deferred": ["value"],
    },
    "deferred_unknown": {"pipeline": TINY, "parameters": {"bogus": "{upstream.metadata.b}"}, "deferred": ["bogus"]},
    "bad_steps": {
        "pipeline": STEP_PARAM,
        "parameters": {"value": 3},
        "steps": {
            "no_such_step": {"parameters": {"x": 1}},
            "make_value": {"parameters": {"value": 4}},
            "scale": {"parameters": {"zzz": 1, "factor": "abc", "value": 1, "offset": 2}},
        },
    },
    "bad_overridable": {
        "pipeline": TRAINING,
        "overridable": [
            "parameters.model_type",
            "steps.preprocess.parameters.test_size",
            "parameters.nope",
            "steps.nostep.parameters.x",
            "steps.preprocess.parameters.zzz",
            "steps.load_data.parameters.data_url",
            "steps.preprocess.parameters.df",
            "model_type",
        ],
    },
    "training_collisions": {
        "pipeline": TRAINING,
        "steps": {
            "load_data": {"parameters": {"data_url": "other.csv"}},
            "train_model": {"parameters": {"model_type": "gradient_boosting"}},
            "preprocess": {"parameters": {"test_size": "a lot"}},
        },
    },
}


@pytest.fixture(scope="module")
def check_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = zenml_env.make_project(tmp_path_factory.mktemp("check-project"), with_training=True)
    broken = root / "brokenpipes"
    broken.mkdir()
    (broken / "__init__.py").write_text("", encoding="utf-8")
    (broken / "raises.py").write_text('raise RuntimeError("boom at import")\n', encoding="utf-8")
    (broken / "missing_dep.py").write_text("import not_a_real_dependency_xyz\n", encoding="utf-8")
    counted = root / "countpipes"
    counted.mkdir()
    (counted / "__init__.py").write_text("", encoding="utf-8")
    (counted / "once.py").write_text(
        "from pathlib import Path\n"
        "with open(Path(__file__).with_name('imports.log'), 'a') as fh:\n"
        "    fh.write('imported\\n')\n"
        "from tinypipes.tiny import tiny_pipeline  # noqa: E402,F401\n",
        encoding="utf-8",
    )
    return root


def run_checker(
    project: Path, jobs: dict[str, Any], tmp_path: Path, config_dir: Path, response_file: bool = False
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"project_root": str(project), "jobs": jobs}), encoding="utf-8")
    args = [zenml_env.PYTHON, "-m", "scheduler.child.check", str(request)]
    if response_file:
        args.append(str(tmp_path / "response.json"))
    proc = subprocess.run(
        args,
        cwd=project,
        env=zenml_env.child_env(project, config_dir),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


@pytest.fixture(scope="module")
def broken(check_project: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    # A config dir that does not exist yet: the checker initialises the store and records nothing else.
    folder = tmp_path_factory.mktemp("check-broken")
    config_dir = folder / "new-zenml-config"
    response, _ = run_checker(check_project, BROKEN_JOBS, folder, config_dir)
    return response, config_dir


def errors_at(response: dict[str, Any], *path: str) -> list[str]:
    return [e["message"] for e in response["errors"] if e["path"] == list(path)]


def only_error_at(response: dict[str, Any], *path: str) -> str:
    found = errors_at(response, *path)
    assert len(found) == 1, (path, response["errors"])
    return found[0]


def test_clean_config_has_no_errors(check_project: Path, tmp_path: Path, zenml_config: Path) -> None:
    response, proc = run_checker(check_project, CLEAN_JOBS, tmp_path, zenml_config, response_file=True)

    assert response["errors"] == []
    # stdout carries only the response; the file holds the same object.
    assert proc.stdout.strip().count("\n") == 0
    saved = json.loads((tmp_path / "response.json").read_text(encoding="utf-8"))
    assert saved == response

    training = response["pipelines"][TRAINING]
    assert training["name"] == "training_pipeline"
    string = {"type": "string"}
    assert training["parameters"] == {
        "data_url": {"type": "str", "required": False, "default": "data/train.csv", "schema": string},
        "model_type": {"type": "str", "required": False, "default": "random_forest", "schema": string},
    }
    assert list(training["steps"]) == ["load_data", "preprocess", "train_model", "evaluate"]
    assert training["steps"]["preprocess"] == {
        "inputs": ["df", "test_size", "random_state"],
        "wired": ["df"],
        # A DataFrame has no JSON Schema: {} accepts anything (it is wired anyway).
        "schemas": {"df": {}, "test_size": {"type": "number"}, "random_state": {"type": "integer"}},
        "from_parameter": {},
    }
    assert training["steps"]["load_data"]["from_parameter"] == {"data_url": "data_url"}
    assert training["steps"]["train_model"]["wired"] == ["X_train", "y_train", "model_type"]
    assert training["steps"]["train_model"]["from_parameter"] == {"model_type": "model_type"}
    assert training["steps"]["train_model"]["schemas"]["model_type"] == string
    step_param = response["pipelines"][STEP_PARAM]
    assert step_param["parameters"]["value"] == {
        "type": "int",
        "required": True,
        "default": None,
        "schema": {"type": "integer"},
    }
    assert step_param["steps"]["scale"] == {
        "inputs": ["value", "factor", "offset"],
        "wired": ["value", "offset"],
        "schemas": {"value": {"type": "integer"}, "factor": {"type": "integer"}, "offset": {"type": "integer"}},
        "from_parameter": {},  # offset=0 is a literal, value an artifact
    }
    assert step_param["steps"]["make_value"]["from_parameter"] == {"value": "value"}
    tiny = response["pipelines"][TINY]["parameters"]
    assert {name: p["schema"] for name, p in tiny.items()} == {
        "label": string,
        "marker_dir": string,
        "sleep_s": {"type": "number"},
        "fail": {"type": "boolean"},
    }


def test_checker_initialises_a_new_store_and_records_nothing_in_it(broken: tuple[dict[str, Any], Path]) -> None:
    _, config_dir = broken
    # Initialised, so the daemon's start-up check prepares the store before any run fires...
    assert (config_dir / MARKER_FILE).exists()
    # ...but no pipeline, snapshot or run is recorded by checking.
    database = config_dir / "local_stores" / "default_zen_store" / "zenml.db"
    with closing(sqlite3.connect(database)) as conn:
        counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in RECORDS}
    assert counts == dict.fromkeys(RECORDS, 0)


def test_malformed_reference(broken: tuple[dict[str, Any], Path]) -> None:
    message = only_error_at(broken[0], "jobs", "malformed", "pipeline")
    assert "package.module:attribute" in message


def test_module_not_found(broken: tuple[dict[str, Any], Path], check_project: Path) -> None:
    message = only_error_at(broken[0], "jobs", "missing_module", "pipeline")
    assert message == f"module 'tinypipes.nope' not found (looked in {check_project.resolve()})"


def test_module_raising_on_import(broken: tuple[dict[str, Any], Path]) -> None:
    message = only_error_at(broken[0], "jobs", "import_raises", "pipeline")
    assert message.startswith("importing 'brokenpipes.raises' failed:")
    assert "RuntimeError: boom at import" in message


def test_missing_dependency_is_an_import_failure(broken: tuple[dict[str, Any], Path]) -> None:
    message = only_error_at(broken[0], "jobs", "missing_dependency", "pipeline")
    assert message.startswith("importing 'brokenpipes.missing_dep' failed:")
    assert "not_a_real_dependency_xyz" in message


def test_missing_attribute(broken: tuple[dict[str, Any], Path]) -> None:
    message = only_error_at(broken[0], "jobs", "no_attribute", "pipeline")
    assert message == "tinypipes.tiny has no attribute 'nothing_here'"


def test_not_a_pipeline(broken: tuple[dict[str, Any], Path]) -> None:
    message = only_error_at(broken[0], "jobs", "not_a_pipeline", "pipeline")
    assert message == "tinypipes.tiny:NOT_A_PIPELINE is an int, not a ZenML pipeline"


def test_each_module_is_imported_once(broken: tuple[dict[str, Any], Path], check_project: Path) -> None:
    response = broken[0]
    assert errors_at(response, "jobs", "counted_a", "pipeline") == []
    assert errors_at(response, "jobs", "counted_b", "pipeline") == []
    assert errors_at(response, "jobs", "counted_c", "pipeline") == ["countpipes.once has no attribute 'absent'"]
    log = (check_project / "countpipes" / "imports.log").read_text(encoding="utf-8")
    assert log.splitlines() == ["imported"]


def test_unknown_pipeline_parameter(broken: tuple[dict[str, Any], Path]) -> None:
    message = only_error_at(broken[0], "jobs", "bad_params", "parameters", "bogus")
    assert "unknown parameter 'bogus'" in message
    assert "label, marker_dir, sleep_s, fail" in message


def test_wrong_pipeline_parameter_type(broken: tuple[dict[str, Any], Path]) -> None:
    message = only_error_at(broken[0], "jobs", "bad_params", "parameters", "sleep_s")
    assert "expects float" in message
    assert "'abc'" in message


def test_missing_required_parameter(broken: tuple[dict[str, Any], Path]) -> None:
    message = only_error_at(broken[0], "jobs", "missing_required", "parameters")
    assert "missing required parameter(s) 'value'" in message


def test_parameters_filled_at_run_time_are_not_type_checked_or_missing(broken: tuple[dict[str, Any], Path]) -> None:
    response = broken[0]
    assert [e for e in response["errors"] if e["path"][:2] == ["jobs", "deferred_typed"]] == []
    assert [e for e in response["errors"] if e["path"][:2] == ["jobs", "deferred_required"]] == []
    message = only_error_at(response, "jobs", "deferred_unknown", "parameters", "bogus")
    assert "unknown parameter 'bogus'" in message  # a template does not make a name exist


def test_unknown_step(broken: tuple[dict[str, Any], Path]) -> None:
    message = only_error_at(broken[0], "jobs", "bad_steps", "steps", "no_such_step")
    assert "make_value, scale" in message


def test_unknown_step_parameter(broken: tuple[dict[str, Any], Path]) -> None:
    path = ("jobs", "bad_steps", "steps", "scale", "parameters", "zzz")
    message = only_error_at(broken[0], *path)
    assert "value, factor, offset" in message


def test_wrong_step_parameter_type(broken: tuple[dict[str, Any], Path]) -> None:
    path = ("jobs", "bad_steps", "steps", "scale", "parameters", "factor")
    message = only_error_at(broken[0], *path)
    assert "expects int" in message
    assert "'abc'" in message


def test_step_parameter_wired_from_pipeline_parameter(
    broken: tuple[dict[str, Any], Path],
) -> None:
    path = ("jobs", "bad_steps", "steps", "make_value", "parameters", "value")
    message = only_error_at(broken[0], *path)
    assert "already passes 'value'" in message
    assert "parameters.value" in message


def test_step_parameter_wired_from_upstream_artifact(
    broken: tuple[dict[str, Any], Path],
) -> None:
    path = ("jobs", "bad_steps", "steps", "scale", "parameters", "value")
    message = only_error_at(broken[0], *path)
    assert "already passes 'value'" in message
    assert "step 'make_value'" in message
    assert "parameters." not in message


def test_step_parameter_wired_from_literal(broken: tuple[dict[str, Any], Path]) -> None:
    path = ("jobs", "bad_steps", "steps", "scale", "parameters", "offset")
    message = only_error_at(broken[0], *path)
    assert "already passes 'offset'" in message
    assert "parameters." not in message


def test_training_collisions_suggest_pipeline_parameters(
    broken: tuple[dict[str, Any], Path],
) -> None:
    response = broken[0]
    base = ("jobs", "training_collisions", "steps")
    data_url = only_error_at(response, *base, "load_data", "parameters", "data_url")
    assert "set parameters.data_url instead" in data_url
    model_type = only_error_at(response, *base, "train_model", "parameters", "model_type")
    assert "set parameters.model_type instead" in model_type
    test_size = only_error_at(response, *base, "preprocess", "parameters", "test_size")
    assert "expects float" in test_size


def test_all_errors_are_collected_with_their_kind(broken: tuple[dict[str, Any], Path]) -> None:
    steps = ("jobs", "bad_steps", "steps")
    training = ("jobs", "training_collisions", "steps")
    expected = {
        **{
            ("jobs", job, "pipeline"): "reference"
            for job in (
                "malformed",
                "missing_module",
                "import_raises",
                "missing_dependency",
                "no_attribute",
                "not_a_pipeline",
                "counted_c",
            )
        },
        ("jobs", "bad_params", "parameters", "bogus"): "unknown",
        ("jobs", "bad_params", "parameters", "sleep_s"): "type",
        ("jobs", "missing_required", "parameters"): "missing",
        ("jobs", "deferred_unknown", "parameters", "bogus"): "unknown",
        (*steps, "no_such_step"): "unknown",
        (*steps, "make_value", "parameters", "value"): "conflict",
        (*steps, "scale", "parameters", "zzz"): "unknown",
        (*steps, "scale", "parameters", "factor"): "type",
        (*steps, "scale", "parameters", "value"): "conflict",
        (*steps, "scale", "parameters", "offset"): "conflict",
        (*training, "load_data", "parameters", "data_url"): "conflict",
        (*training, "train_model", "parameters", "model_type"): "conflict",
        (*training, "preprocess", "parameters", "test_size"): "type",
        **{
            ("jobs", "bad_overridable", "api", "overridable", index): kind
            for index, kind in [(2, "unknown"), (3, "unknown"), (4, "unknown"), (5, "conflict"), (6, "conflict")]
        },
        ("jobs", "bad_overridable", "api", "overridable", 7): "invalid",
    }
    found = [(tuple(e["path"]), e["kind"]) for e in broken[0]["errors"]]
    assert sorted(found) == sorted(expected.items())


def test_bad_overridable_entries(broken: tuple[dict[str, Any], Path]) -> None:
    response = broken[0]
    at = ("jobs", "bad_overridable", "api", "overridable")
    assert errors_at(response, *at, 0) == errors_at(response, *at, 1) == []
    assert (
        only_error_at(response, *at, 2)
        == "unknown parameter 'nope' for training_pipeline; accepted: data_url, model_type"
    )
    assert only_error_at(response, *at, 3) == (
        "unknown step 'nostep' in training_pipeline; its steps are: load_data, preprocess, train_model, evaluate"
    )
    assert "has no input 'zzz'; its inputs are: df, test_size, random_state" in only_error_at(response, *at, 4)
    data_url = only_error_at(response, *at, 5)
    assert "(from pipeline parameter 'data_url')" in data_url
    assert data_url.endswith("list parameters.data_url in api.overridable instead")
    df = only_error_at(response, *at, 6)
    assert "from the output 'output' of step 'load_data'" in df
    assert "parameters." not in df
    assert "expected 'parameters.<name>'" in only_error_at(response, *at, 7)


OVERRIDABLE_CONFIG = f"""\
version: 1
jobs:
  good:
    pipeline: {TRAINING}
    every: 1h
    api:
      overridable: [parameters.model_type, parameters.data_url, steps.preprocess.parameters.test_size]
  bad:
    pipeline: {TRAINING}
    every: 1h
    api:
      overridable:
        - parameters.model_type
        - steps.load_data.parameters.data_url
"""


def test_preflight_positions_overridable_errors_and_returns_descriptions(
    check_project: Path, tmp_path: Path, zenml_config: Path
) -> None:
    path = check_project / "overridable.yaml"
    path.write_text(OVERRIDABLE_CONFIG, encoding="utf-8")
    config = load_config(path)
    env = zenml_env.child_env(check_project, zenml_config)
    result = run_pipeline_check(config, zenml_env.PYTHON, env)

    assert [f"{p.line}:{p.column}" for p in result.problems] == ["14:11"]
    assert str(result.problems[0]).startswith(f"{path}:14:11: the pipeline body already passes 'data_url'")
    description = result.pipelines[TRAINING]
    assert description["name"] == "training_pipeline"
    assert description["steps"]["load_data"]["from_parameter"] == {"data_url": "data_url"}

    # The real description drives the daemon-side checks.
    good = config.jobs["good"]
    body = {
        "parameters": {"model_type": "gradient_boosting"},
        "steps": {"preprocess": {"parameters": {"test_size": 0.3}}},
    }
    assert resolve_overrides(good, description, body) == Overrides(
        {"model_type": "gradient_boosting"}, {"preprocess": {"test_size": 0.3}}
    )
    with pytest.raises(OverrideError) as info:
        resolve_overrides(good, description, {"steps": {"preprocess": {"parameters": {"test_size": "big"}}}})
    assert [p.msg for p in info.value.problems] == [
        "steps.preprocess.parameters.test_size: expected number, got 'big' (str)"
    ]
    tutorial = {"load_data": {"parameters": {"data_url": "data/other.csv"}}}
    assert tutorial_overrides(good, description, tutorial) == Overrides({"data_url": "data/other.csv"})
