"""Shared fixtures: state databases on SQLite and (where reachable) PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests import zenml_env
from tests.harness import Project, write_stand_in

# Modules whose tests run real ZenML pipelines (each child ~300 MB, a core for seconds) or build
# the container image: each group stays on one xdist worker, so they never pile up on two cores.
HEAVY_GROUPS = {
    "tests.child.test_launch": "zenml", "tests.child.test_repair": "zenml", "tests.child.test_check": "zenml",
    "tests.child.test_store_setup": "zenml",
    "tests.pipelines.test_batch_inference": "zenml", "tests.daemon.test_daemon": "zenml",
    "tests.upstream.test_after_zenml": "zenml",
    "tests.deploy.test_container": "container",
}  # fmt: skip
ZENML_TESTS_ELSEWHERE = {"test_a_dropped_csv_is_scored_by_a_real_zenml_run"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__ if item.module else ""
        group = HEAVY_GROUPS.get(module) or ("zenml" if item.originalname in ZENML_TESTS_ELSEWHERE else None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


PG_URL = os.environ.get("ZENML_SCHEDULER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_unavailable() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"no PostgreSQL at {PG_URL}: {type(exc).__name__}"
    return None


@pytest.fixture(scope="session")
def pg_skip_reason() -> str | None:
    return _pg_unavailable()


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema, as a state database URL; dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_skip_reason: str | None) -> Iterator[str]:
    """A fresh, empty state database URL on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    if pg_skip_reason:
        pytest.skip(pg_skip_reason)
    with pg_schema() as url:
        yield url


@pytest.fixture
def pg_url(pg_skip_reason: str | None) -> Iterator[str]:
    """A fresh, empty state database URL on PostgreSQL (skipped, saying why, without one)."""
    if pg_skip_reason:
        pytest.skip(pg_skip_reason)
    with pg_schema() as url:
        yield url


@pytest.fixture(scope="session")
def zenml_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ZenML config/store for the whole session, initialised once up front: its first
    initialisation is slow, and two processes initialising the same new store at once race."""
    path = tmp_path_factory.mktemp("zenml-config")
    zenml_env.init_store(path)
    return path


@pytest.fixture
def project(tmp_path: Path, zenml_config: Path) -> Iterator[Project]:
    proj = Project.create(tmp_path / "project", zenml_config)
    try:
        yield proj
    finally:
        proj.cleanup()


@pytest.fixture
def stand_in(project: Project) -> dict[str, str]:
    """Settings that make the daemon start its children with the stand-in interpreter
    (tests/harness.py) and keep policy tests quick."""
    python = write_stand_in(project.root / "stand-in-python")
    return {"ZENML_SCHEDULER_PYTHON": str(python), "ZENML_SCHEDULER_MAX_CONCURRENT_RUNS": "8",
            "ZENML_SCHEDULER_SHUTDOWN_GRACE": "1s", "ZENML_SCHEDULER_KILL_GRACE": "1s"}  # fmt: skip
