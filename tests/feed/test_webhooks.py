"""Webhooks end to end: audit events in a real SQLite store, a real HTTP receiver, real signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from scheduler.config.loader import load_config
from scheduler.config.model import Config
from scheduler.feed.audit_feed import AuditFeed, AuditRecord, head_id, records_after
from scheduler.feed.webhooks import WebhookSender, notify_event
from scheduler.store.audit import Event, append
from scheduler.store.engine import Store, open_store
from scheduler.store.schema import runs

SECRET = "s3cr3t-signing-key"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
ALL_EVENTS = "[succeeded, failed, timed_out, skipped, paused]"


@dataclass
class Post:
    path: str
    headers: Message  # case-insensitive, as HTTP header names are
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A local webhook receiver: records every POST, answers scripted statuses (then 200)."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.statuses: deque[int] = deque()
        self.holds: dict[str, threading.Event] = {}  # a path held until its event is set
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.cond:
                    receiver.posts.append(Post(self.path, self.headers, body))
                    status = receiver.statuses.popleft() if receiver.statuses else 200
                    receiver.cond.notify_all()
                if self.path in receiver.holds:
                    receiver.holds[self.path].wait(10)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def wait_posts(self, count: int, timeout: float = 5.0) -> list[Post]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.posts) >= count, timeout), f"{len(self.posts)} posts"
            return list(self.posts)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    rx.thread.start()
    yield rx
    for hold in rx.holds.values():
        hold.set()
    rx.server.shutdown()
    rx.server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = open_store(f"sqlite:///{tmp_path}/state.db")
    yield st
    st.close()


def make_config(tmp_path: Path, notify: str) -> Config:
    path = tmp_path / "schedules.yaml"
    path.write_text(f"version: 1\njobs:\n  train:\n    pipeline: x.y:z\n    every: 1h\n    notify:\n{notify}")
    return load_config(path)


def target(url: str, **fields: Any) -> str:
    lines = [f"      - url: {url}"] + [f"        {key}: {value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def add_run(store: Store, run_key: str, attempt: int, status: str) -> None:
    with store.write() as conn:
        conn.execute(
            insert(runs).values(run_key=run_key, attempt=attempt, job="train", trigger="schedule", status=status,
                                created_at=NOW, started_at=NOW, finished_at=NOW + timedelta(seconds=42),
                                source="daemon", config_revision="r1")
        )  # fmt: skip


def emit(store: Store, *events: Event) -> list[AuditRecord]:
    """Append `events` and return them as the audit feed would hand them over."""
    with store.read() as conn:
        start = head_id(conn)
    with store.write() as conn:
        append(conn, NOW, events)
    with store.read() as conn:
        return records_after(conn, start)


def run_event(name: str, run_key: str = "train@1", attempt: int = 1) -> Event:
    return Event(name, "daemon", "train", run_key, "r1", {"attempt": attempt, "exit_code": 1})


def audited(store: Store, *names: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Wait until `count` audit events named `names` exist; return their details."""
    deadline = time.monotonic() + timeout
    while True:
        with store.read() as conn:
            found = [r.details for r in records_after(conn, 0, limit=100000) if r.event in names]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


@pytest.fixture
def sender_factory(store: Store) -> Iterator[Any]:
    senders: list[WebhookSender] = []

    def make(config: Config, start: bool = True, **kwargs: Any) -> WebhookSender:
        sender = WebhookSender(store, lambda: config, **kwargs)
        if start:
            sender.start()
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        sender.stop(timeout=1)


def test_signed_payload_with_the_final_run_record(
    tmp_path: Path, store: Store, receiver: Receiver, sender_factory: Any
) -> None:
    config = make_config(tmp_path, target(f"{receiver.url}/hook?token=abc", name="ops", secret_env="WEBHOOK_SECRET"))
    sender = sender_factory(config)
    add_run(store, "train@1", 1, "failed")
    records = emit(store, run_event("run-failed"))
    sender.subscriber(records)

    (post,) = receiver.wait_posts(1)
    expected = "sha256=" + hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(post.headers["X-Signature"], expected)
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["User-Agent"] == "zenml-scheduler"
    assert post.headers["X-ZenML-Scheduler-Event"] == "failed"
    payload = post.json
    assert payload["event"] == "failed" and payload["job"] == "train" and payload["reason"] is None
    assert payload["audit_id"] == records[0].id and payload["at"] == NOW.isoformat()
    assert payload["run"]["status"] == "failed" and payload["run"]["attempt"] == 1
    assert payload["run"]["duration_s"] == 42.0 and payload["details"] == {"attempt": 1, "exit_code": 1}

    (delivered,) = audited(store, "webhook-delivered")
    assert delivered["target"] == "ops" and delivered["event"] == "failed" and delivered["status"] == 200
    assert delivered["attempt"] == 1 and delivered["delivery"] == post.headers["X-ZenML-Scheduler-Delivery"]
    assert isinstance(delivered["elapsed_ms"], int)
    with store.read() as conn:
        everything = json.dumps([r.details for r in records_after(conn, 0)])
    assert "token=abc" not in everything and SECRET not in everything


def test_a_500_is_retried_with_the_same_delivery_then_succeeds(
    tmp_path: Path, store: Store, receiver: Receiver, sender_factory: Any
) -> None:
    receiver.statuses.append(500)
    url = receiver.url  # no name: audited as scheme://host:port
    config = make_config(tmp_path, target(url, secret_env="WEBHOOK_SECRET", retries=2, backoff="50ms"))
    sender = sender_factory(config)
    add_run(store, "train@1", 1, "timed_out")
    sender.subscriber(emit(store, run_event("run-timed_out")))

    first, second = receiver.wait_posts(2)
    assert first.body == second.body and first.headers["X-Signature"] == second.headers["X-Signature"]
    assert first.headers["X-ZenML-Scheduler-Delivery"] == second.headers["X-ZenML-Scheduler-Delivery"]
    (failed,) = audited(store, "webhook-attempt-failed")
    assert failed["status"] == 500 and failed["attempt"] == 1 and failed["retry_in_s"] == 0.05
    assert failed["error"].startswith("HTTP 500") and failed["target"] == url
    (delivered,) = audited(store, "webhook-delivered")
    assert delivered["attempt"] == 2 and delivered["status"] == 200 and delivered["event"] == "timed_out"


def test_gives_up_after_the_retries_and_audits_it(
    tmp_path: Path, store: Store, receiver: Receiver, sender_factory: Any
) -> None:
    receiver.statuses.extend([503, 503, 503])
    config = make_config(tmp_path, target(receiver.url, name="ops", retries=2, backoff="50ms"))
    sender = sender_factory(config)
    sender.subscriber(emit(store, run_event("run-lost", run_key="train@gone")))  # no run row: run is null

    (gave_up,) = audited(store, "webhook-failed")
    assert gave_up["attempts"] == 3 and gave_up["status"] == 503 and gave_up["target"] == "ops"
    assert [d["retry_in_s"] for d in audited(store, "webhook-attempt-failed")] == [0.05, 0.1]
    posts = receiver.wait_posts(3)
    assert len(posts) == 3 and posts[0].json["run"] is None and posts[0].json["event"] == "failed"
    assert audited(store, "webhook-delivered", timeout=0) == []


def test_an_unreachable_receiver_is_audited_without_its_url(
    tmp_path: Path, store: Store, receiver: Receiver, sender_factory: Any
) -> None:
    receiver.server.shutdown()
    receiver.server.server_close()  # nothing listens on this port any more
    config = make_config(tmp_path, target(f"{receiver.url}/secret-path", retries=0))
    sender_factory(config).subscriber(emit(store, run_event("run-failed")))
    (gave_up,) = audited(store, "webhook-failed")
    assert gave_up["attempts"] == 1 and gave_up["status"] is None
    assert "refused" in gave_up["error"].lower() and "secret-path" not in json.dumps(gave_up)


def test_a_slow_receiver_delays_neither_the_feed_nor_other_targets(
    tmp_path: Path, store: Store, receiver: Receiver, sender_factory: Any
) -> None:
    slow = receiver.holds["/slow"] = threading.Event()
    config = make_config(tmp_path, target(f"{receiver.url}/slow") + target(f"{receiver.url}/fast"))
    sender = sender_factory(config)
    records = emit(store, run_event("run-failed"), run_event("run-failed", run_key="train@2"))

    started = time.monotonic()
    sender.subscriber(records)
    assert time.monotonic() - started < 0.5  # the feed thread only enqueues

    # Both fast deliveries complete while the slow receiver still holds both of its requests.
    fast = audited(store, "webhook-delivered", count=2)
    assert len(fast) == 2 and not slow.is_set()
    assert {d["target"] for d in fast} == {receiver.url} and {d["audit_id"] for d in fast} == {r.id for r in records}
    assert sorted(p.path for p in receiver.wait_posts(4)) == ["/fast", "/fast", "/slow", "/slow"]
    slow.set()
    assert len(audited(store, "webhook-delivered", count=4)) == 4


def test_only_the_final_attempt_of_a_run_notifies(
    tmp_path: Path, store: Store, receiver: Receiver, sender_factory: Any
) -> None:
    config = make_config(tmp_path, target(receiver.url))
    sender = sender_factory(config, workers=1)  # one worker: deliveries are handled in order
    add_run(store, "train@1", 1, "failed")
    add_run(store, "train@1", 2, "failed")  # the retry row scheduled after attempt 1
    sender.subscriber(emit(store, run_event("run-failed", attempt=1)))
    sender.subscriber(emit(store, run_event("run-failed", attempt=2)))

    audited(store, "webhook-delivered")
    posts = receiver.wait_posts(1)
    assert len(posts) == 1 and posts[0].json["run"]["attempt"] == 2 and posts[0].json["details"]["attempt"] == 2


def test_events_map_to_notify_events_and_targets_filter_them(
    tmp_path: Path, store: Store, receiver: Receiver, sender_factory: Any
) -> None:
    config = make_config(tmp_path, target(receiver.url, events="[skipped, paused]"))
    sender = sender_factory(config, workers=1)
    skip = {"code": "concurrency", "reason": "previous run still active"}
    records = emit(
        store,
        run_event("run-succeeded"),  # not subscribed by this target
        Event("skip", "daemon", "train", "train@s1", "r1", skip),
        Event("skip", "api", "train", "train@s1", "r1", {"code": "duplicate", "reason": "taken"}),
        Event("pause", "cli", "train", details={"was_paused": False, "reason": "maintenance"}),
        Event("pause", "cli", "train", details={"was_paused": True, "reason": "again"}),
        Event("auto-pause", "daemon", "train", details={"reason": "3 failures", "consecutive_failures": 3}),
        Event("resume", "cli", "train", details={"was_paused": True, "reason": None}),
        Event("webhook-delivered", "webhook", "train", details={"event": "paused"}),
        Event("skip", "daemon", "other-job", "other@1", "r1", skip),  # not in the config
    )
    sender.subscriber(records)
    audited(store, "webhook-delivered", count=4)
    got = [(p.json["event"], p.json["reason"]) for p in receiver.wait_posts(3)]
    assert got == [("skipped", "previous run still active"), ("paused", "maintenance"), ("paused", "3 failures")]
    assert [notify_event(r) for r in records] == [
        "succeeded", "skipped", None, "paused", None, "paused", None, None, "skipped",
    ]  # fmt: skip
    assert notify_event(emit(store, run_event("run-cancelled"))[0]) is None


def test_the_current_config_decides_the_targets(tmp_path: Path, store: Store, receiver: Receiver) -> None:
    current = {"config": make_config(tmp_path, target(f"{receiver.url}/old", events="[succeeded]"))}
    sender = WebhookSender(store, lambda: current["config"])
    sender.start()
    try:
        add_run(store, "train@1", 1, "succeeded")
        current["config"] = make_config(tmp_path, target(f"{receiver.url}/new", events="[succeeded]"))  # a reload
        feed = AuditFeed(store, [sender.subscriber], poll=0.02)
        feed.start()
        emit(store, run_event("run-succeeded"))
        (post,) = receiver.wait_posts(1)
        feed.stop()
    finally:
        sender.stop(timeout=1)
    assert post.path == "/new" and post.json["run"]["status"] == "succeeded"


def test_overflow_and_stop_are_audited_as_dropped(tmp_path: Path, store: Store, receiver: Receiver) -> None:
    config = make_config(tmp_path, target(receiver.url, name="ops"))
    sender = WebhookSender(store, lambda: config, max_pending=1)  # never started: nothing is sent
    sender.subscriber(emit(store, run_event("run-failed", run_key="a"), run_event("run-failed", run_key="b")))
    sender.stop(timeout=0.1)
    dropped = audited(store, "webhook-dropped", count=2)
    assert sorted(d["reason"] for d in dropped) == ["queue full (1 deliveries pending)", "scheduler stopped"]
    assert receiver.posts == []


def test_stop_returns_promptly_while_a_receiver_hangs(
    tmp_path: Path, store: Store, receiver: Receiver, sender_factory: Any
) -> None:
    receiver.holds["/hang"] = threading.Event()  # released only at teardown
    config = make_config(tmp_path, target(f"{receiver.url}/hang", timeout="10s"))
    sender = sender_factory(config, workers=1)
    sender.subscriber(emit(store, run_event("run-failed", run_key="a"), run_event("run-failed", run_key="b")))
    receiver.wait_posts(1)
    started = time.monotonic()
    sender.stop(timeout=0.3)
    assert time.monotonic() - started < 1.0
    (dropped,) = audited(store, "webhook-dropped")
    assert dropped["reason"] == "scheduler stopped"  # the second one never got its turn
