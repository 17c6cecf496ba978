"""The HTTP API: routes over `ApiBackend`, API-key auth with scopes, rate limits, size limits.

Every request, accepted or refused, is audited with the name of the key that made it (never
the key) and counted in `api_requests_total`; `ApiGuard` does both for all routes at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from scheduler.api.backend import ApiBackend
from scheduler.api.bodies import PauseRequest, RunRequest, TutorialRequest
from scheduler.api.guard import ApiGuard, refuse
from scheduler.api.keys import KeyRing
from scheduler.api.overrides import OverrideError, Overrides, resolve_overrides
from scheduler.api.rate_limit import RateLimiter, retry_after_header
from scheduler.api.trigger_recorder import IdempotencyConflict
from scheduler.api.tutorial import jobs_for_pipeline, tutorial_overrides
from scheduler.config.stored_keys import Scope
from scheduler.config.watch_spec import templated_keys
from scheduler.feed.metrics import Metrics
from scheduler.policy.fire_request import ACTIVE_STATUSES, FINAL_STATUSES

STATUSES = (*ACTIVE_STATUSES, *FINAL_STATUSES)
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,200}$"  # visible ASCII: it becomes part of the run key


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")
bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token.")


class Auth:
    """Turns the presented key into its stored entry, spends its rate-limit token, checks scope."""

    def __init__(self, keys: KeyRing, limiter: RateLimiter) -> None:
        self.keys = keys
        self.limiter = limiter
        self._next_refresh = 0.0

    def require(self, scope: Scope) -> Callable[..., Awaitable[str]]:
        async def dependency(
            request: Request,
            x_api_key: str | None = Depends(api_key_header),
            authorization: HTTPAuthorizationCredentials | None = Depends(bearer),
        ) -> str:
            presented = x_api_key or (authorization.credentials if authorization else None)
            if not presented:
                refuse(request, 401, "missing API key: send X-API-Key or Authorization: Bearer",
                       {"WWW-Authenticate": "Bearer"})  # fmt: skip
            now = time.monotonic()
            if now >= self._next_refresh:  # pick up `api-key create` / `revoke` within a second
                self._next_refresh = now + 1.0
                self.keys.refresh()
            key = self.keys.lookup(presented)
            if key is None:
                refuse(request, 401, "unknown API key", {"WWW-Authenticate": "Bearer"})
            request.state.key_name = key.name
            wait = self.limiter.take(key.name, now)
            if wait:
                refuse(request, 429, f"rate limit of API key {key.name!r} exceeded",
                       {"Retry-After": retry_after_header(wait)})  # fmt: skip
            if not key.allows(scope):
                refuse(request, 403, f"API key {key.name!r} ({', '.join(key.scopes)}) lacks the {scope!r} scope")
            return key.name

        return dependency


def build_app(
    backend: ApiBackend,
    keys: KeyRing,
    limiter: RateLimiter,
    metrics: Metrics,
    max_body: int,
    clients: RateLimiter | None = None,
    request_timeout: float = 10.0,
) -> FastAPI:
    """The API; `limiter` limits each key, `clients` each client address (before authentication)."""
    app = FastAPI(
        title="zenml-scheduler",
        description="Trigger and follow the jobs declared in schedules.yaml.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    auth = Auth(keys, limiter)
    read, trigger, admin = auth.require("read"), auth.require("trigger"), auth.require("admin")
    app.add_middleware(
        ApiGuard, backend=backend, metrics=metrics, max_body=max_body, clients=clients, body_timeout=request_timeout
    )

    def known_job(request: Request, job: str) -> None:
        request.state.job = job
        if job not in backend.config().jobs:
            refuse(request, 404, f"no job named {job!r} in schedules.yaml")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready"}})
    def readyz() -> JSONResponse:
        """The scheduler runs, the database answers and a config is loaded."""
        checks = backend.readiness()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics_text(_key: str = Depends(read)) -> Response:
        """Prometheus text format."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/jobs", tags=["jobs"])
    def list_jobs(_key: str = Depends(read)) -> dict[str, Any]:
        """Every declared job: definition, next fire times, state."""
        return {"jobs": backend.jobs()}

    @app.get("/v1/jobs/{job}", tags=["jobs"], responses={404: {"description": "No such job"}})
    def get_job(request: Request, job: str, _key: str = Depends(read)) -> dict[str, Any]:
        known_job(request, job)
        view = backend.job(job)
        assert view is not None
        return view

    def start_run(
        request: Request, job: str, resolve: Callable[[], Overrides], idempotency_key: str | None, key: str
    ) -> Any:
        if not backend.accepting():
            refuse(request, 503, "the daemon is stopping; try again once it is back", {"Retry-After": "5"})
        job_obj = backend.config().jobs[job]
        try:
            overrides = resolve()
        except OverrideError as exc:
            refuse(request, 422, "; ".join(p.msg for p in exc.problems), errors=[p.as_dict() for p in exc.problems])
        missing = [k for k in templated_keys(job_obj.spec.parameters) if k not in overrides.parameters]
        if missing:
            origin = "the upstream run" if job_obj.spec.after is not None else "arriving files"
            kind = "an after" if job_obj.spec.after is not None else "a watch"
            refuse(request, 422, f"{job} is {kind} job: its parameters {', '.join(missing)} are filled from "
                                 f"{origin}; set them to start it by hand")  # fmt: skip
        try:
            done = backend.trigger(job, overrides, idempotency_key, f"api:{key}")
        except IdempotencyConflict as exc:
            refuse(request, 409, str(exc))
        request.state.run_key = done.record["run_key"]
        headers = {"Location": f"/v1/runs/{quote(done.record['run_key'], safe='')}"}
        if done.replayed:
            headers["Idempotent-Replayed"] = "true"
        return done.record, headers

    @app.post(
        "/v1/jobs/{job}/runs",
        tags=["runs"],
        status_code=202,
        responses={404: {"description": "No such job"}, 409: {"description": "Idempotency-Key reused"},
                   422: {"description": "Override not allowed or wrong type"}},
    )  # fmt: skip
    def create_run(
        request: Request,
        job: str,
        body: RunRequest | None = None,
        idempotency_key: str | None = Header(None, pattern=IDEMPOTENCY_KEY),
        key: str = Depends(trigger),
    ) -> JSONResponse:
        """Start a run of a declared job now; returns its record and a Location to follow it."""
        known_job(request, job)
        config = backend.config()
        payload = (body or RunRequest()).model_dump()

        def resolve() -> Overrides:
            return resolve_overrides(config.jobs[job], config.pipeline_description(job), payload)

        record, headers = start_run(request, job, resolve, idempotency_key, key)
        return JSONResponse(record, status_code=202, headers=headers)

    @app.post(
        "/trigger",
        tags=["runs"],
        status_code=202,
        responses={404: {"description": "No job runs this pipeline"},
                   409: {"description": "Several jobs run this pipeline"}},
    )  # fmt: skip
    def tutorial_trigger(
        request: Request,
        body: TutorialRequest,
        idempotency_key: str | None = Header(None, pattern=IDEMPOTENCY_KEY),
        key: str = Depends(trigger),
    ) -> JSONResponse:
        """Drop-in for the ZenML tutorial's wrapper: runs the one job declared for `pipeline_name`."""
        if body.config_path is not None:
            refuse(request, 422, "config_path is not accepted: each job's configuration comes from schedules.yaml")
        config = backend.config()
        candidates = jobs_for_pipeline(config, body.pipeline_name)
        if not candidates:
            refuse(request, 404, f"no job in schedules.yaml runs pipeline {body.pipeline_name!r}")
        if len(candidates) > 1:
            refuse(request, 409, f"several jobs run pipeline {body.pipeline_name!r}; "
                                 "use POST /v1/jobs/{job}/runs with one of them",
                   errors=[{"candidates": candidates}])  # fmt: skip
        job = candidates[0]
        request.state.job = job
        steps = body.model_dump()["steps"]

        def resolve() -> Overrides:
            found = tutorial_overrides(config.jobs[job], config.pipeline_description(job), steps)
            if not body.parameters:
                return found
            extra = resolve_overrides(config.jobs[job], config.pipeline_description(job),
                                      {"parameters": body.parameters})  # fmt: skip
            return Overrides({**found.parameters, **extra.parameters}, found.steps)

        record, headers = start_run(request, job, resolve, idempotency_key, key)
        payload = {"status": "accepted", "message": f"pipeline {body.pipeline_name} triggered as job {job}",
                   "job": job, "run_key": record["run_key"], "run": record}  # fmt: skip
        return JSONResponse(payload, status_code=202, headers=headers)

    @app.get("/v1/runs/{run_key:path}", tags=["runs"], responses={404: {"description": "No such run"}})
    def get_run(request: Request, run_key: str, _key: str = Depends(read)) -> dict[str, Any]:
        """The run's latest attempt."""
        request.state.run_key = run_key
        record = backend.run(run_key)
        if record is None:
            refuse(request, 404, f"no run with key {run_key!r}")
        return record

    @app.get("/v1/runs", tags=["runs"])
    def list_runs(
        job: str | None = Query(None, max_length=100),
        status: str | None = Query(None, pattern="^(" + "|".join(STATUSES) + ")$"),
        limit: int = Query(50, ge=1, le=1000),
        _key: str = Depends(read),
    ) -> dict[str, Any]:
        """Runs, newest first."""
        return {"runs": backend.runs(job, status, limit)}

    def pause_or_resume(request: Request, job: str, paused: bool, body: PauseRequest | None, key: str) -> Any:
        known_job(request, job)
        view = backend.set_paused(job, paused, f"api:{key}", body.reason if body else None)
        if view is None:
            refuse(request, 404, f"job {job!r} is not in the state database yet")
        return view

    @app.post("/v1/jobs/{job}/pause", tags=["jobs"], responses={404: {"description": "No such job"}})
    def pause(request: Request, job: str, body: PauseRequest | None = None, key: str = Depends(admin)) -> Any:
        """Stop the job firing on schedule until resumed (kept across restarts)."""
        return pause_or_resume(request, job, True, body, key)

    @app.post("/v1/jobs/{job}/resume", tags=["jobs"], responses={404: {"description": "No such job"}})
    def resume(request: Request, job: str, key: str = Depends(admin)) -> Any:
        """Let a paused job fire again; slots missed meanwhile are caught up per its policy."""
        return pause_or_resume(request, job, False, None, key)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        content: dict[str, Any] = {"detail": exc.detail}
        errors = getattr(request.state, "errors", None)
        if errors:
            content["errors"] = errors
        return JSONResponse(content, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:5]]
        request.state.reason = "invalid request: " + "; ".join(problems)
        # FastAPI's default handler echoes each offending input back: that can be NaN (which no JSON
        # encoder writes) or megabytes of body, so the answer names the place and the problem only.
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()[:20]
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    return app
