"""The container image, built and run for real with podman on a locally made Debian base.

Slow (a debootstrap, an image build and a ZenML run inside it), so it runs when
ZENML_SCHEDULER_CONTAINER_TEST=1, which `.ci/run` sets after installing podman, runc and
debootstrap. The recipe (no Docker engine, no registry) is the one these machines support.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import REPO, TINYPIPES, wait_for
from tests.zenml_env import FIXTURES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("ZENML_SCHEDULER_CONTAINER_TEST") != "1",
        reason="container test runs with ZENML_SCHEDULER_CONTAINER_TEST=1 (set by .ci/run, which installs podman)",
    ),
]

BASE = "localhost/pybase:bookworm"
IMAGE = "localhost/zenml-scheduler:test"


def podman(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(FIXTURES / "containers.conf")}
    return subprocess.run(["podman", "--runtime", "runc", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=check)  # fmt: skip


def ensure_base_image(tmp: Path) -> None:
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return
    root = tmp / "rootfs"
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates",
         "bookworm", str(root)],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    archive = tmp / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname=".")
    podman("import", str(archive), BASE)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    ensure_base_image(tmp_path_factory.mktemp("base"))
    podman("build", "--format", "docker", "--network", "host",
           "--volume", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
           "--build-arg", f"BASE_IMAGE={BASE}", "-t", IMAGE, str(REPO))  # fmt: skip
    return IMAGE


@pytest.fixture
def container(image: str, tmp_path: Path) -> Iterator[str]:
    project = tmp_path / "app"
    project.mkdir()
    shutil.copytree(TINYPIPES, project / "tinypipes", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "schedules.yaml").write_text(
        "version: 1\njobs:\n  tick:\n    pipeline: tinypipes.tiny:tiny_pipeline\n    every: 15s\n"
        "    enable_cache: false\n    parameters: {sleep_s: 3}\n"
    )
    for path in [project, *project.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    name = f"zs-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--network", "host", "--name", name, "-v", f"{name}-state:/var/lib/zenml-scheduler",
           "-v", f"{project}:/app:ro", image)  # fmt: skip
    try:
        yield name
    finally:
        podman("rm", "-f", name, check=False)
        podman("volume", "rm", "-f", f"{name}-state", check=False)


def test_image_turns_healthy_fires_a_run_and_stops_cleanly(container: str) -> None:
    wait_for(lambda: podman("healthcheck", "run", container, check=False).returncode == 0, 180, "a healthy container")

    def succeeded() -> list[dict]:
        result = podman("exec", container, "zenml-scheduler", "history", "--json", "--config", "/app/schedules.yaml",
                        check=False)  # fmt: skip
        runs = json.loads(result.stdout) if result.returncode == 0 else []
        return [run for run in runs if run["status"] == "succeeded" and run["zenml_run_id"]]

    assert wait_for(succeeded, 180, "a ZenML run inside the container")
    top = podman("top", container, "pid", "comm").stdout
    assert "dumb-init" in top.splitlines()[1]  # PID 1 forwards signals and reaps orphans
    began = time.monotonic()
    podman("stop", "-t", "90", container)
    took = time.monotonic() - began
    state = json.loads(podman("inspect", container).stdout)[0]["State"]
    assert state["ExitCode"] == 0, podman("logs", container, check=False).stderr[-2000:]
    assert took < 75  # within the 60 s shutdown grace (plus the child's own stop), not killed at 90 s
    logs = podman("logs", container, check=False)
    assert '"daemon-stopped"' in logs.stdout + logs.stderr
