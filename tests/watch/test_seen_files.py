"""Files of watch jobs recorded with their runs, on SQLite and PostgreSQL: each file runs once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from scheduler.config.loader import load_config
from scheduler.config.model import Config
from scheduler.policy.file_runs import Dispatch, FileSeen
from scheduler.policy.keys import file_run_key
from scheduler.store import inbox
from scheduler.store.catalog import apply_config
from scheduler.store.engine import Store, open_store
from scheduler.store.schema import audit, jobs, runs, watched_files
from scheduler.watch.seen_files import fire_files, load_known

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=timezone.utc)
GRACE = timedelta(minutes=10)

CONFIG = """\
version: 1
jobs:
  each:
    pipeline: x.y:z
    watch: {path: incoming}
    parameters: {input_path: "{path}", label: "{stem}"}
  changed:
    pipeline: x.y:z
    watch: {path: incoming, on_modified: retrigger}
    parameters: {input_path: "{path}"}
  batched:
    pipeline: x.y:z
    watch: {path: incoming, batch: per_batch}
    parameters: {input_paths: "{paths}"}
"""


@pytest.fixture
def setup(db_url: str, tmp_path: Path) -> tuple[Store, Config]:
    path = tmp_path / "schedules.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    store = open_store(db_url)
    with store.write() as conn:
        apply_config(conn, config, NOW, "test")
    yield store, config
    store.close()


def seen(rel: str, size: int = 10, mtime_ns: int = 1, digest: str | None = None) -> FileSeen:
    return FileSeen(rel, f"/data/incoming/{rel}", size, mtime_ns, digest)


def fire(store: Store, config: Config, *dispatches: Dispatch):
    with store.write() as conn:
        return fire_files(conn, list(dispatches), config, NOW, GRACE)


def run_rows(store: Store) -> list:
    with store.read() as conn:
        return conn.execute(select(runs).order_by(runs.c.id)).all()


def test_a_file_is_recorded_with_its_run_and_never_fired_twice(setup) -> None:
    store, config = setup
    first = fire(store, config, Dispatch("each", (seen("a.csv"),)))
    assert len(first.fired.queued) == 1 and first.already_seen == 0
    # The same path again, even with a new size (on_modified: ignore): dropped, no second run.
    again = fire(store, config, Dispatch("each", (seen("a.csv", size=99),)))
    assert again.fired.queued == [] and again.already_seen == 1
    with store.read() as conn:
        (event,) = conn.execute(select(audit.c.details).where(audit.c.event == "file-already-seen")).scalars()
    assert json.loads(event)["file"] == "a.csv"
    (run,) = run_rows(store)
    assert run.run_key == file_run_key("each", (seen("a.csv"),))
    assert run.trigger == "file" and run.status == "queued" and run.scheduled_for is None
    launch = json.loads(run.parameters_json)
    assert launch["parameters"] == {"input_path": "/data/incoming/a.csv", "label": "a"}
    with store.read() as conn:
        assert load_known(conn, "each")["a.csv"].size == 10
        assert load_known(conn, "each", details=False) == {"a.csv": None}
        assert conn.execute(select(watched_files.c.run_key)).scalar_one() == run.run_key


def test_retrigger_runs_new_content_only(setup) -> None:
    store, config = setup
    fire(store, config, Dispatch("changed", (seen("a.csv", digest="1" * 64),)))
    same = fire(store, config, Dispatch("changed", (seen("a.csv", mtime_ns=5, digest="1" * 64),)))
    new = fire(store, config, Dispatch("changed", (seen("a.csv", size=11, digest="2" * 64),)))
    assert same.fired.queued == [] and len(new.fired.queued) == 1
    keys = [row.run_key for row in run_rows(store)]
    assert keys == ["changed@file:a.csv#" + "1" * 16, "changed@file:a.csv#" + "2" * 16]
    with store.read() as conn:
        assert load_known(conn, "changed")["a.csv"].version == "2" * 64


def test_files_of_a_paused_job_are_held_not_recorded(setup) -> None:
    store, config = setup
    with store.write() as conn:
        inbox.set_paused(conn, "each", True, "test", NOW)
    done = fire(store, config, Dispatch("each", (seen("a.csv"),)))
    assert [d.job for d in done.held] == ["each"] and done.fired.queued == []
    assert run_rows(store) == []
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(watched_files)).scalar_one() == 0


def test_a_batch_drops_files_recorded_before_and_keys_on_the_rest(setup) -> None:
    store, config = setup
    fire(store, config, Dispatch("batched", (seen("b.csv"),)))
    done = fire(store, config, Dispatch("batched", (seen("a.csv"), seen("b.csv"), seen("c.csv"))))
    assert done.already_seen == 1 and len(done.fired.queued) == 1
    last = run_rows(store)[-1]
    assert last.run_key == file_run_key("batched", (seen("a.csv"), seen("c.csv")))
    assert json.loads(last.parameters_json)["parameters"]["input_paths"] == [
        "/data/incoming/a.csv",
        "/data/incoming/c.csv",
    ]


def test_a_skipped_dispatch_is_recorded_as_skipped(setup) -> None:
    store, config = setup
    fire(store, config, Dispatch("each", (seen("old.csv"),), ("catchup-none", "found at start; catchup is none")))
    (run,) = run_rows(store)
    assert run.status == "skipped" and run.reason.startswith("catchup-none")
    with store.read() as conn:
        assert conn.execute(select(watched_files.c.status)).scalar_one() == "skipped"
    assert fire(store, config, Dispatch("each", (seen("old.csv"),))).already_seen == 1


def test_dispatches_of_a_removed_job_are_dropped(setup) -> None:
    store, config = setup
    done = fire(store, config, Dispatch("gone", (seen("a.csv"),)))
    assert done.fired.queued == [] and run_rows(store) == []


def test_a_watch_job_with_a_very_long_folder_path_is_stored(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    folder = "/".join(["a-rather-long-folder-name"] * 12)  # over 300 characters
    path.write_text(f"version: 1\njobs:\n  deep:\n    pipeline: x.y:z\n    watch: {{path: {folder}}}\n")
    config = load_config(path)
    store = open_store(db_url)
    with store.write() as conn:
        apply_config(conn, config, NOW, "test")
    with store.read() as conn:
        stored = conn.execute(select(jobs.c.trigger)).scalar_one()
    store.close()
    assert stored == f"watch {folder}"[:200]
