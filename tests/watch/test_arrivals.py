"""The pure file-arrival core: when a file is complete, how files are batched, and run keys."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from scheduler.config.loader import parse_config
from scheduler.config.model import Job
from scheduler.policy.file_runs import Dispatch, FileSeen, file_request, template_values
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import MAX_KEY, file_run_key
from scheduler.watch.arrivals import Batcher, SettleTracker, Stat, plan_found_at_start


def seen(rel: str, size: int = 10, mtime_ns: int = 1_000, digest: str | None = None, **kw: bool) -> FileSeen:
    return FileSeen(rel=rel, path=f"/data/in/{rel}", size=size, mtime_ns=mtime_ns, digest=digest, **kw)


def watch_job(watch: str, parameters: str = "{}", name: str = "ingest") -> Job:
    text = f"version: 1\njobs:\n  {name}:\n    pipeline: x.y:z\n    watch: {watch}\n    parameters: {parameters}\n"
    return parse_config(text, Path("/srv/project/schedules.yaml"), "rev").jobs[name]


# ---- SettleTracker --------------------------------------------------------------------------


def test_a_file_is_due_only_after_settle_seconds_without_change() -> None:
    tracker = SettleTracker(settle=2.0)
    stat = Stat(100, 5)
    tracker.observe("a.csv", stat, now=10.0)
    tracker.observe("a.csv", stat, now=11.5)  # unchanged: the wait is not restarted
    assert tracker.due(11.99) == []
    assert tracker.due(12.0) == ["a.csv"]
    assert tracker.confirm("a.csv", stat, now=11.99) is None  # too early: kept pending
    assert "a.csv" in tracker.pending
    item = tracker.confirm("a.csv", stat, now=12.0)
    assert item is not None
    assert (item.stat, item.since) == (stat, 10.0)
    assert tracker.pending == {}
    assert tracker.due(100.0) == []


@pytest.mark.parametrize(
    "changed",
    [Stat(200, 5), Stat(100, 6), Stat(0, 5)],
    ids=["size", "mtime", "truncated"],
)
def test_a_change_of_size_or_mtime_restarts_the_wait(changed: Stat) -> None:
    tracker = SettleTracker(settle=2.0)
    tracker.observe("a.csv", Stat(100, 5), now=0.0)
    tracker.observe("a.csv", changed, now=1.5)
    assert tracker.due(2.0) == []
    assert tracker.next_deadline() == 3.5
    assert tracker.due(3.5) == ["a.csv"]
    item = tracker.confirm("a.csv", changed, now=3.5)
    assert item is not None and item.stat == changed


def test_confirm_with_a_different_stat_returns_none_and_restarts() -> None:
    tracker = SettleTracker(settle=2.0)
    tracker.observe("a.csv", Stat(100, 5), now=0.0)
    assert tracker.due(2.0) == ["a.csv"]
    assert tracker.confirm("a.csv", Stat(150, 7), now=2.0) is None
    assert tracker.pending["a.csv"].stat == Stat(150, 7)
    assert tracker.pending["a.csv"].since == 2.0
    assert tracker.due(3.9) == []
    assert tracker.confirm("a.csv", Stat(150, 7), now=3.9) is None
    item = tracker.confirm("a.csv", Stat(150, 7), now=4.0)
    assert item is not None and item.stat == Stat(150, 7)


def test_a_vanished_file_is_dropped() -> None:
    tracker = SettleTracker(settle=2.0)
    tracker.observe("gone.csv", Stat(1, 1), now=0.0)
    tracker.observe("kept.csv", Stat(1, 1), now=0.0)
    tracker.observe("gone.csv", None, now=1.0)
    assert list(tracker.pending) == ["kept.csv"]
    assert tracker.due(5.0) == ["kept.csv"]
    tracker.observe("kept.csv", Stat(1, 1), now=1.0)
    assert tracker.confirm("kept.csv", None, now=5.0) is None  # vanished between due and confirm
    assert tracker.pending == {}
    assert tracker.confirm("never-seen.csv", Stat(1, 1), now=5.0) is None
    tracker.observe("never-seen.csv", None, now=5.0)  # dropping an unknown file is harmless
    assert tracker.pending == {}


def test_next_deadline_is_the_earliest_pending_file() -> None:
    tracker = SettleTracker(settle=3.0)
    assert tracker.next_deadline() is None
    tracker.observe("b", Stat(1, 1), now=5.0)
    tracker.observe("a", Stat(1, 1), now=7.0)
    assert tracker.next_deadline() == 8.0
    tracker.observe("b", Stat(2, 2), now=6.0)  # b changed: its wait restarts
    assert tracker.next_deadline() == 9.0
    assert tracker.confirm("b", Stat(2, 2), now=9.0) is not None
    assert tracker.next_deadline() == 10.0
    assert tracker.confirm("a", Stat(1, 1), now=10.0) is not None
    assert tracker.next_deadline() is None


def test_found_at_start_is_kept_through_changes() -> None:
    tracker = SettleTracker(settle=1.0)
    tracker.observe("old.csv", Stat(1, 1), now=0.0, found_at_start=True)
    tracker.observe("new.csv", Stat(1, 1), now=0.0)
    tracker.observe("old.csv", Stat(2, 2), now=0.5)  # a later observation does not say found_at_start
    assert tracker.confirm("old.csv", Stat(3, 3), now=1.5) is None  # changed again, via confirm
    old = tracker.confirm("old.csv", Stat(3, 3), now=2.5)
    new = tracker.confirm("new.csv", Stat(1, 1), now=2.5)
    assert old is not None and old.found_at_start is True
    assert new is not None and new.found_at_start is False


def test_zero_settle_is_due_at_once() -> None:
    tracker = SettleTracker(settle=0.0)
    tracker.observe("a", Stat(1, 1), now=4.0)
    assert tracker.due(4.0) == ["a"]
    assert tracker.confirm("a", Stat(1, 1), now=4.0) is not None


# ---- Batcher --------------------------------------------------------------------------------


def test_max_batch_splits_full_batches_at_once_and_the_rest_after_the_window() -> None:
    files = [seen(f"f{i:04d}.csv") for i in range(1000)]
    batcher = Batcher(window=10.0, max_batch=300)
    batcher.add(files, now=0.0)
    batches = batcher.take(0.0)
    assert [len(b) for b in batches] == [300, 300, 300]
    assert batcher.take(9.99) == []
    assert batcher.next_deadline() == 10.0
    rest = batcher.take(10.0)
    assert [len(b) for b in rest] == [100]
    assert [f for batch in batches + rest for f in batch] == files
    assert batcher.next_deadline() is None
    assert batcher.take(100.0) == []


def test_the_window_is_measured_from_the_first_file() -> None:
    batcher = Batcher(window=10.0, max_batch=500)
    assert batcher.next_deadline() is None
    batcher.add([], now=1.0)  # nothing arrived: no window opens
    assert batcher.next_deadline() is None
    batcher.add([seen("a")], now=2.0)
    assert batcher.take(2.0) == []
    batcher.add([seen("b")], now=8.0)
    batcher.add([seen("c")], now=11.9)
    assert batcher.take(11.99) == []
    assert batcher.next_deadline() == 12.0  # later files do not push the window out
    assert [[f.rel for f in b] for b in batcher.take(12.0)] == [["a", "b", "c"]]
    batcher.add([seen("d")], now=30.0)  # the next file opens a new window
    assert batcher.next_deadline() == 40.0


def test_a_batch_filling_up_goes_at_once_and_the_leftover_opens_a_new_window() -> None:
    batcher = Batcher(window=10.0, max_batch=3)
    batcher.add([seen("a")], now=0.0)
    assert batcher.take(0.0) == []
    batcher.add([seen("b"), seen("c"), seen("d")], now=4.0)
    assert [[f.rel for f in b] for b in batcher.take(4.0)] == [["a", "b", "c"]]
    assert batcher.next_deadline() == 14.0
    assert batcher.take(13.0) == []
    assert [[f.rel for f in b] for b in batcher.take(14.0)] == [["d"]]


# Arrivals per tick (one tick per second) for a timeline; max_batch 7, window 5.
ARRIVALS = [3, 0, 10, 1, 0, 0, 0, 0, 0, 20, 0, 2, 0, 0, 0, 0, 0, 0, 6, 1, 7, 0, 0, 0, 0, 0, 0]


def test_every_file_ends_up_in_exactly_one_batch_in_order() -> None:
    batcher = Batcher(window=5.0, max_batch=7)
    files = [seen(f"f{i:03d}") for i in range(sum(ARRIVALS))]
    feed = iter(files)
    out: list[list[FileSeen]] = []
    for tick, count in enumerate(ARRIVALS + [0] * 10):
        now = float(tick)
        batcher.add([next(feed) for _ in range(count)], now)
        deadline = batcher.next_deadline()
        batches = batcher.take(now)
        for batch in batches:
            assert 1 <= len(batch) <= 7
            if len(batch) < 7:  # a partial batch only once its window has passed
                assert deadline is not None and now >= deadline
        out.extend(batches)
    assert batcher.files == [] and batcher.next_deadline() is None
    assert [f.rel for batch in out for f in batch] == [f.rel for f in files]
    assert len({f.rel for batch in out for f in batch}) == len(files)


# ---- plan_found_at_start --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("catchup", "dispatched", "skipped"),
    [
        ("all", ["a", "b", "c", "d"], []),
        ("none", [], [("a", "catchup-none"), ("b", "catchup-none"), ("c", "catchup-none"), ("d", "catchup-none")]),
        ("latest", ["c"], [("a", "coalesced"), ("b", "coalesced"), ("d", "coalesced")]),
    ],
)
def test_plan_found_at_start(catchup: str, dispatched: list[str], skipped: list[tuple[str, str]]) -> None:
    files = [seen("a", mtime_ns=300), seen("b", mtime_ns=100), seen("c", mtime_ns=900), seen("d", mtime_ns=500)]
    run, skip = plan_found_at_start(files, catchup)
    assert [f.rel for f in run] == dispatched
    assert [(f.rel, code) for f, code in skip] == skipped


def test_plan_found_at_start_latest_breaks_mtime_ties_by_rel() -> None:
    files = [seen("b.csv", mtime_ns=7), seen("c.csv", mtime_ns=7), seen("a.csv", mtime_ns=7), seen("z", mtime_ns=6)]
    run, skip = plan_found_at_start(files, "latest")
    assert [f.rel for f in run] == ["c.csv"]
    assert [f.rel for f, _ in skip] == ["b.csv", "a.csv", "z"]
    again, _ = plan_found_at_start(list(reversed(files)), "latest")
    assert [f.rel for f in again] == ["c.csv"]


@pytest.mark.parametrize("catchup", ["all", "latest", "none"])
def test_plan_found_at_start_with_no_files(catchup: str) -> None:
    assert plan_found_at_start([], catchup) == ([], [])


# ---- run keys -------------------------------------------------------------------------------


def test_file_run_key_format() -> None:
    key = file_run_key("ingest", (seen("sub/a.csv", size=10, mtime_ns=1_000),))
    expected_identity = hashlib.sha256(b"10:1000").hexdigest()[:12]
    assert key == f"ingest@file:sub/a.csv#{expected_identity}"
    digest = "0123456789abcdef" + "f" * 48
    assert file_run_key("ingest", (seen("a.csv", digest=digest),)) == "ingest@file:a.csv#0123456789abcdef"


@pytest.mark.parametrize(
    ("before", "after", "same"),
    [
        (seen("a", size=10, mtime_ns=1), seen("a", size=11, mtime_ns=1), False),
        (seen("a", size=10, mtime_ns=1), seen("a", size=10, mtime_ns=2), False),
        (seen("a", size=10, mtime_ns=1), seen("a", size=10, mtime_ns=1, found_at_start=True), True),
        (seen("a", digest="aa" * 32), seen("a", digest="bb" * 32), False),
        (seen("a", size=1, mtime_ns=1, digest="aa" * 32), seen("a", size=2, mtime_ns=2, digest="aa" * 32), True),
        (seen("a", size=10, mtime_ns=1), seen("b", size=10, mtime_ns=1), False),
    ],
    ids=["size", "mtime", "found-at-start-irrelevant", "digest", "digest-wins-over-stat", "name"],
)
def test_file_run_key_identity(before: FileSeen, after: FileSeen, same: bool) -> None:
    assert (file_run_key("j", (before,)) == file_run_key("j", (after,))) is same


def test_file_run_key_depends_on_the_job() -> None:
    assert file_run_key("a", (seen("x"),)) != file_run_key("b", (seen("x"),))


def test_batch_key_is_independent_of_order_and_changes_with_a_member() -> None:
    files = [seen("a", size=1), seen("b", size=2), seen("c", size=3)]
    key = file_run_key("ingest", tuple(files))
    assert re.fullmatch(r"ingest@files:3#[0-9a-f]{16}", key)
    assert file_run_key("ingest", tuple(reversed(files))) == key
    assert file_run_key("ingest", (files[1], files[2], files[0])) == key
    changed = (files[0], seen("b", size=99), files[2])
    assert file_run_key("ingest", changed) != key
    renamed = (files[0], seen("b2", size=2), files[2])
    assert file_run_key("ingest", renamed) != key
    assert file_run_key("ingest", tuple(files[:2])).startswith("ingest@files:2#")
    assert file_run_key("other", tuple(files)) != key


@pytest.mark.parametrize("digest", [None, "ab" * 32])
def test_very_long_paths_stay_within_the_key_column_and_distinct(digest: str | None) -> None:
    job = "j" * 100  # the longest job name allowed
    prefix = "deep/" * 150
    first = seen(prefix + "one.csv", digest=digest)
    second = seen(prefix + "two.csv", digest=digest)
    keys = [file_run_key(job, (first,)), file_run_key(job, (second,))]
    assert all(len(key) <= MAX_KEY == 400 for key in keys)
    assert keys[0] != keys[1]
    assert all(key.startswith(f"{job}@file:deep/") for key in keys)
    assert keys[0].endswith(f"#{first.identity}")
    assert file_run_key(job, (first,)) == keys[0]  # stable
    batch = file_run_key(job, (first, second))
    assert len(batch) <= MAX_KEY


def test_a_path_exactly_at_the_limit_is_kept_whole() -> None:
    file = seen("x")
    room = MAX_KEY - len(f"j@file:#{file.identity}")
    fits = seen("a" * room)
    assert file_run_key("j", (fits,)) == f"j@file:{'a' * room}#{fits.identity}"
    longer = file_run_key("j", (seen("a" * (room + 1)),))
    assert len(longer) <= MAX_KEY
    assert "a" * (room + 1) not in longer


# ---- templates and fire requests ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "name", "stem"),
    [
        ("a.csv", "a.csv", "a"),
        ("a.tar.gz", "a.tar.gz", "a.tar"),
        (".hidden", ".hidden", ".hidden"),
        (".hidden.txt", ".hidden.txt", ".hidden"),
        ("README", "README", "README"),
        ("sub/dir/report.v2.parquet", "report.v2.parquet", "report.v2"),
    ],
)
def test_per_file_template_values(rel: str, name: str, stem: str) -> None:
    assert template_values((seen(rel),), "per_file") == {"path": f"/data/in/{rel}", "name": name, "stem": stem}


def test_per_batch_template_values_are_paths_sorted_by_rel() -> None:
    files = (seen("b.csv"), seen("a/z.csv"), seen("a.csv"))
    assert template_values(files, "per_batch") == {
        "paths": ["/data/in/a.csv", "/data/in/a/z.csv", "/data/in/b.csv"],
    }


def test_file_request_renders_a_per_file_job() -> None:
    job = watch_job("{path: inbox}", '{input: "{path}", out: "results/{stem}.json", meta: {n: "{name}"}, k: 3}')
    file = seen("day/2024-01-01.csv", size=5, mtime_ns=77)
    request = file_request(job, Dispatch("ingest", (file,)))
    assert request == FireRequest(
        job="ingest",
        trigger="file",
        run_key=file_run_key("ingest", (file,)),
        source="watcher",
        parameters={
            "input": "/data/in/day/2024-01-01.csv",
            "out": "results/2024-01-01.json",
            "meta": {"n": "2024-01-01.csv"},
            "k": 3,
        },
        preskip=None,
        files=({"file": "day/2024-01-01.csv", "size": 5, "mtime_ns": 77, "identity": file.identity},),
    )
    assert request.scheduled_for is None


def test_file_request_renders_a_per_batch_job_and_keeps_the_skip() -> None:
    job = watch_job("{path: inbox, batch: per_batch}", '{inputs: "{paths}", literal: "{{paths}}"}')
    files = (seen("b.csv"), seen("a.csv"))
    request = file_request(job, Dispatch("ingest", files, ("catchup-none", "found at start; catchup is none")))
    assert request.parameters == {"inputs": ["/data/in/a.csv", "/data/in/b.csv"], "literal": "{paths}"}
    assert request.run_key == file_run_key("ingest", files)
    assert request.run_key.startswith("ingest@files:2#")
    assert request.preskip == ("catchup-none", "found at start; catchup is none")
    assert (request.trigger, request.source) == ("file", "watcher")
    assert [f["file"] for f in request.files] == ["b.csv", "a.csv"]  # as dispatched
