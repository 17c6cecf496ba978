"""The HTTP floor for bench/api.py: a minimal FastAPI app on uvicorn, served like the daemon's API.

    python bench/api_floor.py

Binds 127.0.0.1 on a free port, prints `{"port": N}` on stdout once it serves, and answers
`POST /v1/jobs/{job}/runs` with 202 and a small JSON body until SIGTERM. Same stack and server
settings as scheduler/api/server.py (uvicorn.Server on a thread, over a socket bound beforehand
with proto IPPROTO_TCP so that asyncio sets TCP_NODELAY on each connection, no access log, no
lifespan, the event loop and HTTP parser uvicorn picks there), and like the daemon's route it is a
plain `def` endpoint that reads the Idempotency-Key header and a JSON body, so it runs in anyio's
thread pool too: what bench/api.py measures on top of this is what the scheduler adds (auth, the
state database, the run record, the audit trail, launching the runs).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, Any] = {}


def build_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.post("/v1/jobs/{job}/runs", status_code=202)
    def create_run(job: str, body: Body | None = None, idempotency_key: str | None = Header(None)) -> JSONResponse:
        record = {"run_key": f"{job}@api:{idempotency_key}", "job": job, "status": "queued"}
        return JSONResponse(record, status_code=202)

    return app


def main() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    config = uvicorn.Config(build_app(), log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    # On a thread, as in the daemon; the main thread only waits (SIGTERM ends the process).
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            return 1
        time.sleep(0.01)
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
