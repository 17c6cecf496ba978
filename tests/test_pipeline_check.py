"""The pipeline checker as a real subprocess: every error kind, by exact path."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import zenml_env

pytestmark = pytest.mark.slow

TINY = "tinypipes.tiny:tiny_pipeline"
STEP_PARAM = "tinypipes.tiny:tiny_with_step_param"
TRAINING = "pipelines.training:training_pipeline"

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
    "bad_steps": {
        "pipeline": STEP_PARAM,
        "parameters": {"value": 3},
        "steps": {
            "no_such_step": {"parameters": {"x": 1}},
            "make_value": {"parameters": {"value": 4}},
            "scale": {"parameters": {"zzz": 1, "factor": "abc", "value": 1, "offset": 2}},
        },
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
    project: Path, jobs: dict[str, Any], tmp_path: Path, response_file: bool = False
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str], Path]:
    # A config dir that does not exist yet: the checker must not create a store.
    config_dir = tmp_path / "untouched-zenml-config"
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"project_root": str(project), "jobs": jobs}), encoding="utf-8")
    args = [zenml_env.PYTHON, "-m", "scheduler.pipeline_check", str(request)]
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
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc, config_dir


@pytest.fixture(scope="module")
def broken(check_project: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    response, _, config_dir = run_checker(check_project, BROKEN_JOBS, tmp_path_factory.mktemp("check-broken"))
    return response, config_dir


def errors_at(response: dict[str, Any], *path: str) -> list[str]:
    return [e["message"] for e in response["errors"] if e["path"] == list(path)]


def only_error_at(response: dict[str, Any], *path: str) -> str:
    found = errors_at(response, *path)
    assert len(found) == 1, (path, response["errors"])
    return found[0]


def test_clean_config_has_no_errors(check_project: Path, tmp_path: Path) -> None:
    response, proc, config_dir = run_checker(check_project, CLEAN_JOBS, tmp_path, response_file=True)

    assert response["errors"] == []
    # stdout carries only the response; the file holds the same object.
    assert proc.stdout.strip().count("\n") == 0
    saved = json.loads((tmp_path / "response.json").read_text(encoding="utf-8"))
    assert saved == response
    assert not config_dir.exists()

    training = response["pipelines"][TRAINING]
    assert training["parameters"] == {
        "data_url": {"type": "str", "required": False, "default": "data/train.csv"},
        "model_type": {"type": "str", "required": False, "default": "random_forest"},
    }
    assert list(training["steps"]) == ["load_data", "preprocess", "train_model", "evaluate"]
    assert training["steps"]["preprocess"] == {
        "inputs": ["df", "test_size", "random_state"],
        "wired": ["df"],
    }
    assert training["steps"]["train_model"]["wired"] == ["X_train", "y_train", "model_type"]
    step_param = response["pipelines"][STEP_PARAM]
    assert step_param["parameters"]["value"] == {"type": "int", "required": True, "default": None}
    assert step_param["steps"]["scale"] == {
        "inputs": ["value", "factor", "offset"],
        "wired": ["value", "offset"],
    }


def test_checker_creates_nothing_in_a_store(broken: tuple[dict[str, Any], Path]) -> None:
    _, config_dir = broken
    assert not config_dir.exists()


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
        (*steps, "no_such_step"): "unknown",
        (*steps, "make_value", "parameters", "value"): "conflict",
        (*steps, "scale", "parameters", "zzz"): "unknown",
        (*steps, "scale", "parameters", "factor"): "type",
        (*steps, "scale", "parameters", "value"): "conflict",
        (*steps, "scale", "parameters", "offset"): "conflict",
        (*training, "load_data", "parameters", "data_url"): "conflict",
        (*training, "train_model", "parameters", "model_type"): "conflict",
        (*training, "preprocess", "parameters", "test_size"): "type",
    }
    found = [(tuple(e["path"]), e["kind"]) for e in broken[0]["errors"]]
    assert sorted(found) == sorted(expected.items())
