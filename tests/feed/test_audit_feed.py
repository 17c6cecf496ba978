"""The audit feed: committed events only, each once, in order, and flushed on stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone

import pytest

from scheduler.feed.audit_feed import AuditFeed, AuditRecord
from scheduler.store import audit
from scheduler.store.audit import Event
from scheduler.store.engine import Store, open_store
from scheduler.tuning import FEED_BATCH as BATCH

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    yield opened
    opened.close()


class Collector:
    """A subscriber that keeps what it was handed (thread-safe: the feed calls it on its thread)."""

    def __init__(self) -> None:
        self.batches: list[list[AuditRecord]] = []
        self.threads: list[str] = []  # the thread each batch was delivered on
        self.lock = threading.Lock()

    def __call__(self, batch: Sequence[AuditRecord]) -> None:
        with self.lock:
            self.batches.append(list(batch))
            self.threads.append(threading.current_thread().name)

    @property
    def events(self) -> list[str]:
        with self.lock:
            return [r.event for batch in self.batches for r in batch]

    @property
    def ids(self) -> list[int]:
        with self.lock:
            return [r.id for batch in self.batches for r in batch]


def append(store: Store, *names: str, job: str | None = "a") -> None:
    with store.write() as conn:
        audit.append(conn, NOW, [Event(name, "test", job, details={"n": name}) for name in names])


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_step_delivers_committed_events_in_order_with_their_fields(store: Store) -> None:
    seen = Collector()
    feed = AuditFeed(store, [seen])
    assert feed.step() is False and seen.batches == []
    with store.write() as conn:
        audit.append(conn, NOW, [Event("fire", "scheduler", "a", "a@slot", "rev1", {"trigger": "schedule"})])
    append(store, "pause", "resume")
    assert feed.step() is False
    assert seen.events == ["fire", "pause", "resume"] and seen.ids == [1, 2, 3]
    first = seen.batches[0][0]
    assert first == AuditRecord(1, NOW, "fire", "scheduler", "a", "a@slot", "rev1", {"trigger": "schedule"})
    assert first.at.tzinfo is not None
    assert feed.step() is False and len(seen.batches) == 1  # nothing is delivered twice


def test_uncommitted_and_rolled_back_events_are_never_delivered(store: Store) -> None:
    seen = Collector()
    feed = AuditFeed(store, [seen])
    append(store, "one")
    with store.write() as conn:
        audit.append(conn, NOW, [Event("two", "test")])
        feed.step()  # another connection, mid-transaction: sees only what is committed
        assert seen.events == ["one"]
    feed.step()
    assert seen.events == ["one", "two"]

    with pytest.raises(RuntimeError), store.write() as conn:
        audit.append(conn, NOW, [Event("rolled-back", "test")])
        raise RuntimeError("abort")
    append(store, "three")  # reuses the rolled-back id: the feed has not moved past it
    feed.step()
    assert seen.events == ["one", "two", "three"] and seen.ids == [1, 2, 3]


def test_large_backlogs_come_in_batches_in_order(store: Store) -> None:
    seen = Collector()
    feed = AuditFeed(store, [seen])
    append(store, *[f"e{i}" for i in range(2 * BATCH + 5)])
    assert feed.step() is True and feed.step() is True and feed.step() is False
    assert [len(b) for b in seen.batches] == [BATCH, BATCH, 5]
    assert seen.ids == list(range(1, 2 * BATCH + 6))


def test_started_feed_follows_from_the_head(store: Store) -> None:
    seen = Collector()
    append(store, "before-start")
    feed = AuditFeed(store, [seen], poll=0.01)
    feed.start()
    append(store, "a1")
    append(store, "a2", "a3")
    wait_for(lambda: seen.events == ["a1", "a2", "a3"])
    assert set(seen.threads) == {"audit-feed"}
    feed.stop()
    append(store, "after-stop")
    time.sleep(0.05)
    assert seen.events == ["a1", "a2", "a3"]


def test_stop_flushes_what_the_thread_has_not_delivered(store: Store) -> None:
    seen = Collector()
    append(store, "old")
    feed = AuditFeed(store, [seen], poll=3600)
    feed.start(from_id=0)
    # Once "old" is delivered the thread's read is done and it goes into its hour-long wait,
    # so whatever is appended now can only arrive through stop's final flush.
    wait_for(lambda: seen.events == ["old"])
    append(store, "late1", "late2")
    started = time.monotonic()
    feed.stop()
    assert time.monotonic() - started < 2  # stop wakes the thread instead of waiting for it
    assert seen.events == ["old", "late1", "late2"]
    assert seen.threads == ["audit-feed", threading.current_thread().name]


def test_start_from_an_id_replays_after_it(store: Store) -> None:
    seen = Collector()
    append(store, "e1", "e2", "e3")
    feed = AuditFeed(store, [seen], poll=0.01)
    feed.start(from_id=1)
    wait_for(lambda: seen.events == ["e2", "e3"])
    feed.stop()


def test_stop_without_start_delivers_nothing(store: Store) -> None:
    # Bug fixed: a never-started feed is at id 0, and stop's flush replayed the whole history.
    seen = Collector()
    append(store, "old1", "old2")
    AuditFeed(store, [seen]).stop()
    assert seen.batches == []


def test_a_failing_subscriber_neither_stops_the_others_nor_the_feed(store: Store) -> None:
    seen = Collector()
    calls = []

    def broken(batch: Sequence[AuditRecord]) -> None:
        calls.append(len(batch))
        raise ValueError("subscriber bug")

    feed = AuditFeed(store, [broken, seen], poll=0.01)
    feed.start()
    append(store, "e1")
    wait_for(lambda: seen.events == ["e1"])
    append(store, "e2")
    wait_for(lambda: seen.events == ["e1", "e2"])
    feed.stop()
    assert calls == [1, 1]


def test_concurrent_steps_deliver_each_event_once_in_order(store: Store) -> None:
    # Bug fixed: stop's final flush could overlap a step still on the thread; two steps read the
    # same position and delivered one batch twice. Steps are now serialized.
    seen = Collector()
    feed = AuditFeed(store, [seen])
    total = 300
    done = threading.Event()

    def write() -> None:
        for i in range(0, total, 3):
            append(store, f"e{i}", f"e{i + 1}", f"e{i + 2}")
        done.set()

    def step() -> None:
        while not done.is_set():
            feed.step()
        feed.step()

    threads = [threading.Thread(target=write), *(threading.Thread(target=step) for _ in range(4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    feed.step()
    assert seen.ids == list(range(1, total + 1))
