"""Schemathesis hooks for the OpenAPI fuzz run (tests/api/test_http.py): every other generated JSON
body gets a value no schema-driven generator produces, since it is not JSON or not sensible
(NaN, Infinity, 1e999, a 400-digit integer, control characters, a lone surrogate), and is sent
as the bytes Python's own JSON encoder writes for it. The daemon must answer each with a 4xx."""

from __future__ import annotations

import itertools
import json
from typing import Any

import schemathesis

HOSTILE: list[Any] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    10**400,
    1.7976931348623157e308,
    "\x00\x07\x1b[31m\u202e",
    "\ud800",
    {"deep": [[[[[[[[[[[[["x"]]]]]]]]]]]]]},
]
_turns = itertools.count()
SENT = "hostile-bodies.log"  # in the working directory of the run


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    turn = next(_turns)
    if not isinstance(body, dict) or turn % 2:
        return body
    value = HOSTILE[(turn // 2) % len(HOSTILE)]
    hostile = dict(body)
    target = hostile.get("parameters")
    if isinstance(target, dict):
        hostile["parameters"] = {**target, "x": value}
    else:
        key = next(iter(hostile), "parameters")
        hostile[key] = value
    raw = json.dumps(hostile).encode()  # allow_nan: NaN and Infinity as Python writes them
    with open(SENT, "ab") as sent:  # the test checks that hostile bodies were sent at all
        sent.write(raw[:200] + b"\n")
    return raw
