"""Hostile requests against a real daemon on each engine: non-finite and huge numbers, control
characters in every place a string goes, deep nesting, broken encodings. Each gets a 4xx (or is
served), never a 500 or a traceback, and the API's audit trail keeps being written afterwards.

The OpenAPI fuzz run (tests/api/test_http.py) covers the schema's shapes; these are the inputs
a schema-driven generator does not produce, because they are not valid JSON or not sensible."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from tests.api.test_http import api_url, create_key
from tests.harness import Project, wait_for

pytestmark = pytest.mark.slow

CONFIG = """\
version: 1
jobs:
  j:
    pipeline: tinypipes.tiny:tiny_pipeline
    every: 1h
    api:
      overridable: [parameters.x]
"""

BODIES = [
    '{"parameters": {"x": NaN}}',
    '{"parameters": {"x": Infinity}}',
    '{"parameters": {"x": -1e999}}',
    '{"parameters": {"x": 1e308}}',
    '{"parameters": {"x": ' + "9" * 400 + "}}",
    '{"parameters": {"x": ' + "9" * 5000 + "}}",
    '{"parameters": {"x": [1, 2, NaN]}}',
    '{"parameters": {"x": "a\\u0000b\\u001b[31m"}}',
    '{"parameters": {"x\\u0000": 1}}',
    '{"parameters": {"x": "\\ud800"}}',
    '{"parameters": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}",
    "[" * 50_000 + "]" * 50_000,
    '{"reason": "\\u0000 stop \\u0007"}',
    '{"pipeline_name": "\\u0000", "parameters": {"x": NaN}}',
    "\x00\x01\x02",
    "\xff\xfe not utf-8",
]
PATHS = [
    "/v1/jobs/j/runs",
    "/v1/jobs/j/runs?wait=true",
    "/trigger",
    "/v1/jobs/j/pause",
    "/v1/jobs/%00/runs",
    "/v1/jobs/j%0a%1b/pause",
]
GETS = [
    "/v1/jobs/%00",
    "/v1/jobs/%1b%5b31m",
    "/v1/runs?limit=99999999999999999999999",
    "/v1/runs?limit=NaN",
    "/v1/runs?job=%00&status=%00",
    "/v1/runs/99999999999999999999999999",
    "/v1/runs/-1",
    "/v1/runs/1e999",
    "/v1/runs/%00",
]


def test_hostile_requests_get_4xx_and_the_audit_trail_keeps_going(
    project: Project, stand_in: dict[str, str], db_url: str
) -> None:
    project.write_config(CONFIG)
    key = create_key(project, "ops", "admin")
    unlimited = {"ZENML_SCHEDULER_API_RATE_LIMIT": "0", "ZENML_SCHEDULER_API_CLIENT_RATE_LIMIT": "0"}
    daemon = project.start_daemon("--api", "--api-port", "0", "--db-url", db_url, env={**stand_in, **unlimited})
    base = api_url(daemon)
    server_errors = []
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as http:
        for path in PATHS:
            for body in BODIES:
                raw = body.encode("utf-8", "surrogatepass") if not body.startswith("\xff") else b"\xff\xfe x"
                response = http.post(path, content=raw, headers={"Content-Type": "application/json"})
                if response.status_code >= 500:
                    server_errors.append(f"POST {path} {body[:50]!r}: {response.status_code} {response.text[:200]}")
        for path in GETS:
            response = http.get(path)
            if response.status_code >= 500:
                server_errors.append(f"GET {path}: {response.status_code} {response.text[:200]}")
        assert not server_errors, "\n".join(server_errors)
        assert http.get("/v1/jobs/j", params={"marker": "after"}).status_code == 200
    assert daemon.process.poll() is None
    engine = create_engine(db_url)
    try:
        audited = "SELECT COUNT(*) FROM audit WHERE event = 'api-request' AND details LIKE '%' || :ok || '%'"
        wait_for(lambda: scalar(engine, audited, ok='"status":200'), 30, "the request after the corpus to be audited")
        assert daemon.stop() == 0
        with engine.connect() as conn:
            stored = [row[0] for row in conn.execute(text("SELECT parameters_json FROM runs"))]
        # only the bodies that hold real values (1e308, a 400-digit integer, a string with control
        # characters) started runs, and what they stored is strict JSON
        assert len(stored) == 6
        for parameters in stored:
            json.loads(parameters, parse_constant=refuse_constant)
        assert scalar(engine, "SELECT COUNT(*) FROM audit WHERE event = 'audit-write-failed'") == 0
    finally:
        engine.dispose()
    assert "Traceback" not in daemon.output


def refuse_constant(name: str) -> None:
    raise AssertionError(f"{name} stored")


def scalar(engine: Engine, sql: str, **params: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())
