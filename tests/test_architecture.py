"""The package structure holds: import contracts (lint-imports) and what importing really loads."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _lint(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=folder, capture_output=True, text=True, check=False)


def test_the_import_contracts_hold() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # the pure bottom reaching up into the daemon
        ("timing/clock.py", "from scheduler.daemon import loop", "scheduler.timing.clock -> scheduler.daemon.loop"),
        # two side packages that must stay independent
        ("runs/runner.py", "from scheduler.watch import watchers", "scheduler.runs.runner -> scheduler.watch.watchers"),
        # the daemon side importing ZenML
        ("store/audit.py", "import zenml", "scheduler.store.audit -> zenml"),
        # the launch child's internals from outside the child package
        ("runs/launcher.py", "from scheduler.child import launch", "scheduler.runs.launcher -> scheduler.child.launch"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    shutil.copytree(REPO / "scheduler", tmp_path / "scheduler", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "scheduler" / module
    target.write_text(target.read_text() + f"\n{line}  # deliberately against the contracts\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "BROKEN" in result.stdout and broken in result.stdout


def _loaded(imports: str, roots: tuple[str, ...]) -> str:
    code = f"import sys, {imports}\nprint(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return result.stdout.strip()


def test_importing_the_daemon_never_loads_zenml() -> None:
    daemon = "scheduler.cli.main, scheduler.daemon.loop, scheduler.runs.preflight, scheduler.runs.runner"
    assert _loaded(daemon, ("zenml", "pandas", "sklearn", "numpy")) == ""
    # The HTTP stack is imported only when the API is enabled.
    assert _loaded(daemon, ("fastapi", "uvicorn", "starlette", "prometheus_client", "jsonschema")) == ""
    api = (
        "scheduler.api.app, scheduler.api.server, scheduler.daemon.services, scheduler.feed.metrics, "
        "scheduler.api.overrides"
    )
    assert _loaded(api, ("zenml", "pandas", "sklearn", "numpy")) == ""


def test_the_daemon_install_pulls_no_example_or_test_library() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=,; ]", requirement)[0].lower() for requirement in project["dependencies"]}
    assert names.isdisjoint({"scikit-learn", "pandas", "numpy", "pyarrow", "pytest", "ruff"})
    examples = {re.split(r"[\[<>=,; ]", r)[0].lower() for r in project["optional-dependencies"]["examples"]}
    assert {"scikit-learn", "pandas", "numpy", "pyarrow"} <= examples
