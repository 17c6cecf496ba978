"""The API application in process, over a real SQLite state database: readiness and refusals
that a real daemon rarely shows (a stopping scheduler, an unreachable database)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from scheduler.api.app import build_app
from scheduler.api.backend import ApiBackend
from scheduler.api.keys import KeyRing, hash_key
from scheduler.api.rate_limit import RateLimiter
from scheduler.config.loader import load_config
from scheduler.config.stored_keys import StoredKey
from scheduler.feed.metrics import Metrics
from scheduler.store import audit
from scheduler.store.engine import open_store
from scheduler.store.fires import FireResult

KEY = "zsk_test-key"


def client(
    tmp_path: Path, health: dict[str, bool], clients: RateLimiter | None = None
) -> tuple[TestClient, ApiBackend, list[FireResult]]:
    path = tmp_path / "schedules.yaml"
    path.write_text("version: 1\njobs:\n  j:\n    pipeline: a.b:c\n    every: 1h\n")
    config = load_config(path)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    handed: list[FireResult] = []
    backend = ApiBackend(store, lambda: config, timedelta(minutes=10), handed.append, lambda: health)
    keys = KeyRing([StoredKey(name="ci", scopes=("trigger",), hash=hash_key(KEY))], None)
    app = build_app(backend, keys, RateLimiter(0, 1), Metrics(backend.run_counts), max_body=2048, clients=clients)
    return TestClient(app), backend, handed


def test_readyz_is_503_while_the_scheduler_is_not_running_and_triggers_are_refused(tmp_path: Path) -> None:
    health = {"scheduler": True, "config": True}
    http, backend, handed = client(tmp_path, health)
    backend.recorder.start()
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "checks": {**health, "database": True}}
    accepted = http.post("/v1/jobs/j/runs", headers={"X-API-Key": KEY})
    assert accepted.status_code == 202 and accepted.json()["status"] == "queued"
    assert handed and handed[0].queued == [accepted.json()["id"]]  # the main loop is told to launch it
    health["scheduler"] = False  # the daemon is stopping
    assert http.get("/readyz").status_code == 503
    refused = http.post("/v1/jobs/j/runs", headers={"X-API-Key": KEY})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    backend.recorder.stop()


def test_readyz_reports_an_unreachable_database(tmp_path: Path) -> None:
    http, backend, _ = client(tmp_path, {"scheduler": True, "config": True})
    (tmp_path / "state.db").unlink()
    (tmp_path / "state.db").mkdir()  # the database file is gone and cannot be recreated
    backend.store.engine.dispose()
    response = http.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["database"] is False
    assert http.get("/healthz").status_code == 200  # alive, though not ready


def test_the_api_audit_writer_records_refused_requests_with_their_reason(tmp_path: Path) -> None:
    http, backend, _ = client(tmp_path, {"scheduler": True, "config": True})
    assert http.post("/v1/jobs/j/runs", headers={"X-API-Key": "zsk_wrong"}).status_code == 401
    assert http.post("/v1/jobs/j/runs", headers={"X-API-Key": KEY}, content=b"x" * 4000).status_code == 413
    assert http.get("/v1/runs", params={"limit": 0}, headers={"X-API-Key": KEY}).status_code == 422
    backend.audit.flush()
    with backend.store.read() as conn:
        events = [e for e in audit.query(conn) if e["event"].startswith("api-")]
    assert [(e["source"], e["details"]["status"]) for e in events] == [("api:ci", 422)]
    assert "limit" in events[0]["details"]["reason"]
    backend.audit.flush(everything=True)  # at shutdown, or once their interval has passed
    with backend.store.read() as conn:
        anonymous = [e for e in audit.query(conn) if e["event"] == "api-requests-anonymous"]
    assert len(anonymous) == 1
    details = anonymous[0]["details"]
    assert anonymous[0]["source"] == "api:anonymous" and details["client"] == "testclient"
    assert details["count"] == 2 and details["statuses"] == {"401": 1, "413": 1}
    assert details["reasons"]["unknown API key"] == 1
    assert any("larger than 2048 bytes" in reason for reason in details["reasons"])


def test_anonymous_requests_are_rate_limited_by_address_and_audited_in_aggregate(tmp_path: Path) -> None:
    """500 anonymous requests once wrote 504 audit rows in a second."""
    http, backend, _ = client(tmp_path, {"scheduler": True, "config": True}, clients=RateLimiter(0.01, 50))
    statuses = [http.get("/v1/jobs").status_code for _ in range(500)]
    assert statuses.count(401) == 50 and statuses.count(429) == 450  # past the burst: refused before auth
    limited = http.get("/v1/jobs")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    backend.audit.flush(everything=True)
    with backend.store.read() as conn:
        rows = conn.execute(text("SELECT COUNT(*) FROM audit WHERE source = 'api:anonymous'")).scalar_one()
        [event] = [e for e in audit.query(conn) if e["event"] == "api-requests-anonymous"]
    assert rows == 1
    assert event["details"]["count"] == 501 and event["details"]["statuses"] == {"401": 50, "429": 451}


def test_non_finite_numbers_are_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    http, backend, handed = client(tmp_path, {"scheduler": True, "config": True})
    backend.recorder.start()
    for body in ('{"parameters": {"seconds": NaN}}', '{"parameters": {"n": [1, 1e999]}}',
                 '{"steps": {"s": {"parameters": {"x": -Infinity}}}}'):  # fmt: skip
        response = http.post(
            "/v1/jobs/j/runs", content=body, headers={"X-API-Key": KEY, "Content-Type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert "not a finite number" in response.text
    backend.recorder.stop()
    with backend.store.read() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM runs")).scalar_one() == 0
    assert handed == []


def test_a_run_started_by_an_after_trigger_names_its_upstream(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from scheduler.policy.fire_request import FireRequest
    from scheduler.policy.keys import after_run_key
    from scheduler.store import fires

    http, backend, _ = client(tmp_path, {"scheduler": True, "config": True})
    key = after_run_key("j", "4f1c")
    request = FireRequest("j", "after", key, "daemon", upstream="up@2026-12-01T00:00:00Z", chain=("train", "check"))
    with backend.store.write() as conn:
        fires.fire(conn, [request], backend.config(), datetime.now(timezone.utc), timedelta(minutes=10))
    found = http.get(f"/v1/runs/{key}", headers={"X-API-Key": KEY})
    assert found.status_code == 200, found.text
    assert found.json()["upstream"] == "up@2026-12-01T00:00:00Z" and found.json()["chain"] == ["train", "check"]
    assert found.json()["trigger"] == "after"
