"""The request bodies the API accepts, checked whole before anything is recorded.

Python's JSON parser reads more than JSON: NaN, Infinity, numbers like 1e999 (infinite once
read) and lone UTF-16 surrogates such as "\\ud800", which no database or response can encode.
Any of them used to reach the database and fail there, a 500 after the run was recorded, so a
client that retries on 500 started more runs. They are refused here with a 422 naming the place.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


def unstorable(value: Any, where: str) -> str | None:
    """The first value under `value` that no run, database or response could hold, described."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}: {value} is not a finite number"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where}: the text holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unstorable(key, f"{where} (a key)") or unstorable(item, f"{where}.{key}")
            if problem:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = unstorable(item, f"{where}[{index}]")
            if problem:
                return problem
    return None


class Body(BaseModel):
    """A JSON body: only the declared fields, and only values that can be stored."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = unstorable(data, "body")
        if problem:
            raise ValueError(problem)
        return data


class StepOverride(Body):
    parameters: dict[str, Any] = {}


class RunRequest(Body):
    """The shape ZenML uses for run configurations; only the job's `api.overridable` keys may be set."""

    parameters: dict[str, Any] = {}
    steps: dict[str, StepOverride] = {}


class TutorialRequest(Body):
    """The request body of the ZenML tutorial's `/trigger` wrapper."""

    pipeline_name: str = Field(min_length=1, max_length=200)
    steps: dict[str, StepOverride] = {}
    parameters: dict[str, Any] = {}
    config_path: str | None = Field(None, description="Not supported: configuration comes from schedules.yaml.")


class PauseRequest(Body):
    reason: str | None = Field(None, max_length=500)
