"""The HTTP API against a real daemon subprocess on a free port, with real keys, a real pipeline
check (so overrides are type-checked against the real pipeline signature) and stand-in runs."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import STAND_IN, DaemonProcess, Project, wait_for

pytestmark = pytest.mark.slow

SECRET = "webhook-test-secret"
ROOT = Path(__file__).parents[2]

# The stand-in interpreter, except that the pipeline check runs for real: the API validates
# overrides against the schemas that check reports.
CHECKING_STAND_IN = (
    "#!{python}\nimport os, sys\n"
    'if sys.argv[2] == "scheduler.child.check":\n'
    "    os.execv({python!r}, [{python!r}, *sys.argv[1:]])\n"
)

CONFIG = """\
version: 1
jobs:
  train:
    pipeline: tinypipes.api:training_pipeline
    every: 1h
    parameters: {{markers: {markers}}}
    api:
      overridable:
        - parameters.model_type
        - parameters.data_url
        - parameters.mode
        - parameters.seconds
        - steps.train_model.parameters.n_estimators
    notify:
      - url: {hook}
        name: test-receiver
        events: [succeeded, failed, paused]
        secret_env: WEBHOOK_SECRET
        backoff: 100ms
  report-a:
    pipeline: tinypipes.api:report_pipeline
    every: 1h
  report-b:
    pipeline: tinypipes.api:report_pipeline
    every: 1h
  tick:
    pipeline: tinypipes.tiny:tiny_pipeline
    every: 2s
"""


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[Any, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((self.headers, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def stand_in_python(root: Path) -> Path:
    import sys

    path = root / "checking-stand-in"
    body = STAND_IN.format(python=sys.executable).split("\n", 1)[1]
    path.write_text(CHECKING_STAND_IN.format(python=sys.executable) + body)
    path.chmod(0o755)
    return path


def api_url(daemon: DaemonProcess) -> str:
    found = wait_for(lambda: re.search(r"HTTP API on (https?://\S+) ", daemon.output), 120, "the API to listen")
    return found.group(1)


def create_key(project: Project, name: str, *scopes: str) -> str:
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    done = project.cli("api-key", "create", "--name", name, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["key"]


class Api:
    def __init__(self, base: str, project: Project, daemon: DaemonProcess, keys: dict[str, str]) -> None:
        self.base = base
        self.project = project
        self.daemon = daemon
        self.keys = keys
        self.http = httpx.Client(base_url=base, timeout=30)

    def call(
        self, method: str, path: str, key: str | None = None, bearer: bool = False, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            secret = self.keys.get(key, key)
            headers["Authorization" if bearer else "X-API-Key"] = f"Bearer {secret}" if bearer else secret
        return self.http.request(method, path, headers=headers, **kwargs)

    def wait_run(self, run_key: str, status: str = "succeeded", timeout: float = 60) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            record = self.call("GET", f"/v1/runs/{quote(run_key, safe='')}", "reader").json()
            return record if record.get("status") == status else None

        return wait_for(done, timeout, f"{run_key} to be {status}")


def start_api(project: Project, config: str, **env: str) -> tuple[str, DaemonProcess]:
    project.write_config(config)
    python = stand_in_python(project.root)
    daemon = project.start_daemon(
        "--api",
        "--api-port",
        "0",
        env={
            "ZENML_SCHEDULER_PYTHON": str(python),
            "ZENML_SCHEDULER_SHUTDOWN_GRACE": "1s",
            "ZENML_SCHEDULER_KILL_GRACE": "1s",
            "WEBHOOK_SECRET": SECRET,
            # every request of these tests comes from 127.0.0.1: they test the per-key limits
            "ZENML_SCHEDULER_API_CLIENT_RATE_LIMIT": "0",
            **env,
        },
    )
    return api_url(daemon), daemon


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, zenml_config: Path) -> Iterator[Api]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    project = Project.create(tmp_path_factory.mktemp("api") / "project", zenml_config)
    keys = {name: create_key(project, name, scope) for name, scope in
            [("reader", "read"), ("ci", "trigger"), ("ops", "admin"), ("hammer", "read")]}  # fmt: skip
    hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
    config = CONFIG.format(markers=project.root / "markers", hook=hook)
    base, daemon = start_api(project, config, ZENML_SCHEDULER_API_RATE_LIMIT="20", ZENML_SCHEDULER_API_RATE_BURST="30")
    try:
        yield Api(base, project, daemon, keys)
    finally:
        daemon.stop()
        project.cleanup()
        server.shutdown()


# ---- auth and scopes -----------------------------------------------------------------------

MATRIX = [
    # method, path, body, status by key: none, unknown, read, trigger, admin
    ("GET", "/v1/jobs", None, (401, 401, 200, 200, 200)),
    ("GET", "/v1/jobs/train", None, (401, 401, 200, 200, 200)),
    ("GET", "/v1/runs?limit=5", None, (401, 401, 200, 200, 200)),
    ("GET", "/metrics", None, (401, 401, 200, 200, 200)),
    ("POST", "/v1/jobs/train/runs", {}, (401, 401, 403, 202, 202)),
    ("POST", "/trigger", {"pipeline_name": "training_pipeline"}, (401, 401, 403, 202, 202)),
    ("POST", "/v1/jobs/report-a/pause", None, (401, 401, 403, 403, 200)),
    ("POST", "/v1/jobs/report-a/resume", None, (401, 401, 403, 403, 200)),
    ("GET", "/healthz", None, (200, 200, 200, 200, 200)),
    ("GET", "/readyz", None, (200, 200, 200, 200, 200)),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_every_route_answers_each_key_by_its_scope(
    api: Api, method: str, path: str, body: Any, expected: tuple[int, ...]
) -> None:
    for bearer in (False, True):
        got = tuple(
            api.call(method, path, key, bearer=bearer, json=body).status_code
            for key in (None, "zsk_not-a-real-key", "reader", "ci", "ops")
        )
        assert got == expected, f"{method} {path} (bearer={bearer})"


def test_refusals_say_why_and_every_request_is_audited_by_key_name(api: Api) -> None:
    missing = api.call("GET", "/v1/jobs")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert "missing API key" in missing.json()["detail"]
    forbidden = api.call("POST", "/v1/jobs/report-a/pause", "ci")
    assert forbidden.status_code == 403 and "'admin'" in forbidden.json()["detail"]

    def audited() -> list[Any]:
        rows = api.project.query("SELECT source, details FROM audit WHERE event = 'api-request' ORDER BY id")
        return [r for r in rows if json.loads(r["details"])["path"] == "/v1/jobs/report-a/pause"]

    rows = wait_for(lambda: [r for r in audited() if r["source"] == "api:ci"], 10, "the refused request's audit")
    details = json.loads(rows[-1]["details"])
    assert details["status"] == 403 and details["key"] == "ci" and "admin" in details["reason"]
    everything = " ".join(r["details"] + r["source"] for r in api.project.query("SELECT * FROM audit"))
    for secret in api.keys.values():
        assert secret not in everything


def test_a_key_created_while_the_daemon_runs_is_accepted_and_a_revoked_one_refused(api: Api) -> None:
    key = create_key(api.project, "late", "read")
    wait_for(lambda: api.call("GET", "/v1/jobs", key).status_code == 200, 10, "the new key to work")
    assert api.project.cli("api-key", "revoke", "late").returncode == 0
    wait_for(lambda: api.call("GET", "/v1/jobs", key).status_code == 401, 10, "the revoked key to be refused")


# ---- triggering runs ------------------------------------------------------------------------


def test_a_triggered_run_is_recorded_runs_and_can_be_followed(api: Api) -> None:
    response = api.call("POST", "/v1/jobs/train/runs", "ci", json={"parameters": {"model_type": "gbm"}})
    assert response.status_code == 202
    record = response.json()
    assert record["job"] == "train" and record["source"] == "api:ci" and record["status"] in ("queued", "running")
    assert record["parameters"]["parameters"]["model_type"] == "gbm"
    assert response.headers["Location"] == f"/v1/runs/{quote(record['run_key'], safe='')}"
    done = api.wait_run(record["run_key"])
    assert done["duration_s"] is not None and done["zenml_run_id"]
    listed = api.call("GET", "/v1/runs?job=train&status=succeeded&limit=100", "reader").json()["runs"]
    assert record["run_key"] in [r["run_key"] for r in listed]
    assert all(r["job"] == "train" and r["status"] == "succeeded" for r in listed)
    assert api.call("GET", "/v1/runs?status=exploded", "reader").status_code == 422
    assert api.call("GET", "/v1/runs/no-such-run", "reader").status_code == 404


def test_jobs_show_definition_next_fires_and_state(api: Api) -> None:
    jobs = {j["name"]: j for j in api.call("GET", "/v1/jobs", "reader").json()["jobs"]}
    assert set(jobs) == {"train", "report-a", "report-b", "tick"}
    train = jobs["train"]
    assert train["pipeline"] == "tinypipes.api:training_pipeline" and train["trigger"] == "every 1h"
    assert len(train["next_fires"]) == 5 and "parameters.model_type" in train["overridable"]
    assert train["definition"]["every"] == "1h" and "paused" in train["state"]
    assert api.call("GET", "/v1/jobs/nope", "reader").status_code == 404


ALLOWED = (
    "parameters.model_type, parameters.data_url, parameters.mode, parameters.seconds, "
    "steps.train_model.parameters.n_estimators"
)
OVERRIDE_ERRORS = [
    ({"parameters": {"markers": "/elsewhere"}},
     f"parameters.markers may not be overridden: job 'train' allows only: {ALLOWED}"),
    ({"parameters": {"seconds": "ten"}}, "parameters.seconds: expected number, got 'ten' (str)"),
    ({"steps": {"train_model": {"parameters": {"n_estimators": "many"}}}},
     "steps.train_model.parameters.n_estimators: expected integer, got 'many' (str)"),
    ({"steps": {"load_data": {"parameters": {"data_url": "x"}}}},
     "steps.load_data.parameters.data_url may not be overridden"),
    ({"pipeline": "os:system"}, "Extra inputs are not permitted"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), OVERRIDE_ERRORS)
def test_overrides_outside_the_allow_list_or_of_the_wrong_type_are_422(api: Api, body: Any, message: str) -> None:
    def train_runs() -> int:  # the `tick` job fires meanwhile; the refused request must add none of train's
        return len([run for run in api.project.runs() if run["job"] == "train"])

    before = train_runs()
    response = api.call("POST", "/v1/jobs/train/runs", "ci", json=body)
    assert response.status_code == 422, response.text
    assert message in response.text
    assert train_runs() == before


def test_allowed_step_override_reaches_the_run_spec(api: Api) -> None:
    body = {"steps": {"train_model": {"parameters": {"n_estimators": 7}}}}
    record = api.call("POST", "/v1/jobs/train/runs", "ci", json=body).json()
    assert record["parameters"]["steps"]["train_model"]["parameters"] == {"n_estimators": 7}


def test_a_job_without_overridable_keys_takes_no_overrides(api: Api) -> None:
    response = api.call("POST", "/v1/jobs/report-a/runs", "ci", json={"parameters": {"mode": "fail"}})
    assert response.status_code == 422 and "report-a" in response.text
    assert api.call("POST", "/v1/jobs/nope/runs", "ci", json={}).status_code == 404


def test_idempotency_key_makes_retries_return_the_original_run(api: Api) -> None:
    headers = {"Idempotency-Key": "deploy-4711"}
    body = {"parameters": {"model_type": "svm"}}

    def post(_: int) -> httpx.Response:
        return api.call("POST", "/v1/jobs/train/runs", "ci", json=body, headers=headers)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    assert {r.status_code for r in responses} == {202}
    keys = {r.json()["run_key"] for r in responses}
    assert keys == {"train@api:deploy-4711"}
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 7
    assert len(api.project.query("SELECT id FROM runs WHERE run_key = ?", "train@api:deploy-4711")) == 1
    different = api.call("POST", "/v1/jobs/train/runs", "ci", json={"parameters": {"model_type": "x"}}, headers=headers)
    assert different.status_code == 409 and "Idempotency-Key" in different.json()["detail"]
    bad = api.call("POST", "/v1/jobs/train/runs", "ci", json={}, headers={"Idempotency-Key": "has space"})
    assert bad.status_code == 422


def test_rate_limit_answers_429_with_retry_after(api: Api) -> None:
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: api.call("GET", "/healthz", "hammer"), range(10)))
        responses += list(pool.map(lambda _: api.call("GET", "/v1/runs?limit=1", "hammer"), range(150)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}, "150 requests from 8 threads never hit a 20/s limit"
    assert statuses[:10] == [200] * 10  # /healthz takes no key, so it is never limited
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1 and "hammer" in limited.json()["detail"]
    assert statuses.count(200) < 10 + 30 + 20 * 10  # burst plus refill: far fewer than 150 let in
    assert api.call("GET", "/v1/jobs/train", "reader").status_code == 200  # other keys are unaffected
    time.sleep(int(limited.headers["Retry-After"]))
    assert api.call("GET", "/v1/jobs/train", "hammer").status_code == 200


def test_request_body_over_the_limit_is_413(api: Api) -> None:
    big = {"parameters": {"model_type": "x" * 70_000}}
    assert api.call("POST", "/v1/jobs/train/runs", "ci", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'{"parameters": {"model_type": "'
        for _ in range(80):
            yield b"y" * 1000
        yield b'"}}'

    chunked = api.call("POST", "/v1/jobs/train/runs", "ci", content=chunks(),
                       headers={"Content-Type": "application/json"})  # fmt: skip
    assert chunked.status_code == 413


def test_pause_and_resume_by_admin(api: Api) -> None:
    paused = api.call("POST", "/v1/jobs/report-b/pause", "ops", json={"reason": "maintenance"})
    assert paused.status_code == 200 and paused.json()["state"]["paused"] is True
    assert paused.json()["state"]["paused_reason"] == "maintenance"
    resumed = api.call("POST", "/v1/jobs/report-b/resume", "ops")
    assert resumed.status_code == 200 and resumed.json()["state"]["paused"] is False


# ---- the tutorial-compatible endpoint -------------------------------------------------------


def test_tutorial_body_applies_a_wired_step_input_as_the_pipeline_parameter(api: Api) -> None:
    body = {"pipeline_name": "training_pipeline", "steps": {"load_data": {"parameters": {"data_url": "s3://new"}}}}
    response = api.call("POST", "/trigger", "ci", json=body)
    assert response.status_code == 202, response.text
    payload = response.json()
    assert payload["status"] == "accepted" and payload["job"] == "train"
    assert payload["run"]["parameters"]["parameters"]["data_url"] == "s3://new"
    api.wait_run(payload["run_key"])


def test_tutorial_trigger_ambiguity_unknown_and_unusable_inputs(api: Api) -> None:
    ambiguous = api.call("POST", "/trigger", "ci", json={"pipeline_name": "report_pipeline"})
    assert ambiguous.status_code == 409
    assert ambiguous.json()["errors"] == [{"candidates": ["report-a", "report-b"]}]
    assert api.call("POST", "/trigger", "ci", json={"pipeline_name": "nope"}).status_code == 404
    wired = {"pipeline_name": "training_pipeline", "steps": {"train_model": {"parameters": {"data": "x"}}}}
    unusable = api.call("POST", "/trigger", "ci", json=wired)
    assert unusable.status_code == 422 and "train_model" in unusable.text and "data" in unusable.text


# ---- webhooks and metrics -------------------------------------------------------------------


def test_webhook_receiver_gets_a_signed_run_record(api: Api) -> None:
    record = api.call("POST", "/v1/jobs/train/runs", "ci", json={"parameters": {"model_type": "hooked"}}).json()
    api.wait_run(record["run_key"])

    def delivered() -> tuple[Any, bytes] | None:
        for headers, body in Receiver.received:
            payload = json.loads(body)
            if payload.get("run") and payload["run"]["run_key"] == record["run_key"]:
                return headers, body
        return None

    headers, body = wait_for(delivered, 20, "the webhook")
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Signature"], expected)
    payload = json.loads(body)
    assert payload["event"] == "succeeded" and payload["job"] == "train"
    rows = wait_for(lambda: api.project.query("SELECT details FROM audit WHERE event = 'webhook-delivered'"), 10,
                    "the delivery's audit event")  # fmt: skip
    assert any(json.loads(r["details"]).get("target") == "test-receiver" for r in rows)


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_move_when_runs_happen(api: Api) -> None:
    before = api.call("GET", "/metrics", "reader").text
    record = api.call("POST", "/v1/jobs/train/runs", "ci", json={}).json()
    api.wait_run(record["run_key"])

    def moved() -> str | None:
        text = api.call("GET", "/metrics", "reader").text
        done = metric(text, "run_duration_seconds_count", job="train", status="succeeded")
        return text if done > metric(before, "run_duration_seconds_count", job="train", status="succeeded") else None

    after = wait_for(moved, 10, "the metrics to count the run")
    assert metric(after, "fires_total", job="train", outcome="fired") > metric(before, "fires_total", job="train",
                                                                               outcome="fired")  # fmt: skip
    assert metric(after, "audit_events_total") > metric(before, "audit_events_total")
    assert metric(after, "api_requests_total", route="/v1/jobs/{job}/runs", status="202") >= 1
    lag = wait_for(lambda: metric(api.call("GET", "/metrics", "reader").text, "fire_lag_seconds_count"), 10,
                   "a scheduled slot of `tick` to be fired")  # fmt: skip
    assert lag >= 1
    samples = {s.name for f in text_string_to_metric_families(after) for s in f.samples}
    for name in ("fires_total", "fire_lag_seconds_count", "run_duration_seconds_count", "runs_running",
                 "runs_queued", "audit_events_total", "config_reloads_total", "api_requests_total"):  # fmt: skip
        assert name in samples, name


# ---- start-up rules and fuzzing -------------------------------------------------------------


def test_refuses_a_non_loopback_address_without_keys(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config("version: 1\njobs:\n  j:\n    pipeline: tinypipes.tiny:tiny_pipeline\n    every: 1h\n")
    daemon = project.start_daemon("--api", "--api-host", "0.0.0.0", "--api-port", "0", env=stand_in)
    assert daemon.process.wait(timeout=60) == 2
    assert "refusing to serve the API on 0.0.0.0 without API keys" in daemon.output


def test_idempotent_triggers_on_postgresql(project: Project, stand_in: dict[str, str], db_url: str) -> None:
    project.write_config("version: 1\njobs:\n  j:\n    pipeline: tinypipes.tiny:tiny_pipeline\n    every: 1h\n")
    key = create_key(project, "ci", "trigger")
    unlimited = {"ZENML_SCHEDULER_API_RATE_LIMIT": "0", "ZENML_SCHEDULER_API_CLIENT_RATE_LIMIT": "0"}
    daemon = project.start_daemon("--api", "--api-port", "0", "--db-url", db_url, env={**stand_in, **unlimited})
    base = api_url(daemon)
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as http:

        def post(n: int) -> httpx.Response:
            return http.post("/v1/jobs/j/runs", headers={"Idempotency-Key": f"k{n % 3}"})

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(post, range(24)))
        assert {r.status_code for r in responses} == {202}
        assert {r.json()["run_key"] for r in responses} == {"j@api:k0", "j@api:k1", "j@api:k2"}
        assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in responses) == 3
        runs = http.get("/v1/runs?job=j&limit=100").json()["runs"]
        assert sorted(r["run_key"] for r in runs if r["attempt"] == 1) == ["j@api:k0", "j@api:k1", "j@api:k2"]
    assert daemon.stop() == 0


def test_serves_tls_with_the_configured_certificate(project: Project, stand_in: dict[str, str]) -> None:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed; it makes the test certificate")
    cert, key = project.root / "cert.pem", project.root / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    project.write_config("version: 1\njobs:\n  j:\n    pipeline: tinypipes.tiny:tiny_pipeline\n    every: 1h\n")
    tls = {"ZENML_SCHEDULER_API_SSL_CERTFILE": str(cert), "ZENML_SCHEDULER_API_SSL_KEYFILE": str(key)}
    half = project.start_daemon(
        "--api", "--api-port", "0", env={**stand_in, "ZENML_SCHEDULER_API_SSL_CERTFILE": str(cert)}
    )
    assert half.process.wait(timeout=60) == 2
    assert "api_ssl_certfile and api_ssl_keyfile must be set together" in half.output
    daemon = project.start_daemon("--api", "--api-port", "0", env={**stand_in, **tls})
    base = api_url(daemon)
    assert base.startswith("https://127.0.0.1:")
    assert httpx.get(f"{base}/healthz", verify=str(cert)).json() == {"status": "ok"}
    with pytest.raises(httpx.HTTPError):  # plain HTTP gets no answer from a TLS socket
        httpx.get(base.replace("https://", "http://") + "/healthz", timeout=5)
    assert daemon.stop() == 0


def test_openapi_fuzz_finds_no_server_error(tmp_path: Path, zenml_config: Path) -> None:
    import subprocess
    import sys

    project = Project.create(tmp_path / "project", zenml_config)
    key = create_key(project, "fuzz", "admin")
    config = CONFIG.format(markers=project.root / "markers", hook="http://127.0.0.1:9/unreachable")
    base, daemon = start_api(project, config, ZENML_SCHEDULER_API_RATE_LIMIT="0")
    try:
        assert httpx.get(f"{base}/openapi.json").json()["openapi"].startswith("3.")
        done = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", "25", "--seed", "4711", "--header", f"X-API-Key: {key}", "--workers", "1",
             "--phases", "examples,coverage,fuzzing", "--generation-deterministic", "--generation-allow-x00", "true"],
            capture_output=True, text=True, timeout=400, check=False, cwd=tmp_path,
            # every other JSON body carries NaN, Infinity, huge numbers or control characters
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks", "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        sent = (tmp_path / "hostile-bodies.log").read_bytes().splitlines()
        assert len(sent) >= 10 and any(b"NaN" in line for line in sent)
        assert daemon.process.poll() is None
    finally:
        daemon.stop()
        project.cleanup()
