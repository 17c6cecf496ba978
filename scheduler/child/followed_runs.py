"""What the run follower reads from the ZenML store, and how it remembers what it has sent.

`poll` is the follower's one unit of work: list the runs that ended inside the window, describe
the new, finished ones, hand each description to ``emit`` (oldest end first) and move the window
on. It talks to the store only through a `RunSource`, so its bookkeeping is tested with a fake;
`ZenMLRunSource` is the real one (ZenML is imported when it is first used, never by importing
this module).

The window. A run's end time is written by whichever process ran it, by that host's clock, and
becomes visible when its transaction commits: a run can appear in the store with an end time
somewhat in the past. So each poll lists from the start of the previous successful poll minus
the overlap (the first poll from ``--since`` minus the overlap), and the ids already handled in
that window are skipped. Ids whose end time falls out of the window can never be listed again
and are forgotten, so memory stays bounded by the runs of one overlap period.

Cost. Converting a listed run costs the store about 1 ms of CPU, excluding its id in the query
about a tenth of that; so the listing excludes the ids already handled (the latest-ending
`EXCLUDED_IDS_MAX` of them, which bounds the query's length) instead of skipping them here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from zenml.models import PipelineRunResponse

# ZenML's datetime filters take whole seconds (``zenml.constants.FILTERING_DATETIME_FORMAT``).
_FILTER_FORMAT = "%Y-%m-%d %H:%M:%S"

EXCLUDED_IDS_MAX = 100


def json_value(value: Any) -> Any:
    """A ZenML metadata (or parameter) value as plain JSON.

    Numbers, strings, booleans and null stay as they are; ``Uri``, ``Path`` and ``DType`` are
    ``str`` subclasses and become plain strings, ``StorageSize`` a plain int; tuples become lists
    and sets sorted lists. Non-finite floats, which JSON cannot carry, become the strings
    ``"nan"``, ``"inf"`` and ``"-inf"``. Anything else becomes its ``str()``.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_value(v) for v in value), key=repr)
    return str(value)


def utc_iso(moment: datetime) -> str:
    """ISO-8601 with a ``+00:00`` offset; a naive time (as ZenML stores them) is taken as UTC."""
    aware = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return aware.isoformat()


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken as UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


@dataclass
class RunWindow:
    """The window of end times the next poll lists, and the runs already handled inside it."""

    start: datetime
    overlap: timedelta
    handled: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def since(cls, cursor: datetime, overlap: timedelta) -> RunWindow:
        """The first window: runs that ended at ``cursor`` minus ``overlap`` or later."""
        return cls(start=as_utc(cursor) - overlap, overlap=overlap)

    def listing_start(self) -> datetime:
        """Where the store listing starts: the window start rounded down to whole seconds."""
        return self.start.replace(microsecond=0)

    def is_handled(self, run_id: str) -> bool:
        return run_id in self.handled

    def handle(self, run_id: str, ended: datetime) -> None:
        """Remember a run (sent, or deliberately not sent) until it can no longer be listed."""
        self.handled[run_id] = as_utc(ended)

    def latest_handled(self, limit: int) -> list[str]:
        """Up to ``limit`` handled ids, those that ended last first (they stay in the window longest)."""
        ranked = sorted(self.handled.items(), key=lambda item: item[1], reverse=True)
        return [run_id for run_id, _ in ranked[:limit]]

    def advance(self, poll_started: datetime) -> None:
        """After a successful poll that started at ``poll_started``: move on, forget the old."""
        self.start = max(self.start, as_utc(poll_started) - self.overlap)
        floor = self.listing_start()
        for run_id in [r for r, ended in self.handled.items() if ended < floor]:
            del self.handled[run_id]


@dataclass(frozen=True)
class Candidate:
    """A run as the cheap listing shows it: no end time yet, only whether it has finished."""

    run_id: str
    finished: bool


class RunSource(Protocol):
    """Where `poll` reads runs from."""

    def candidates(self, ended_from: datetime, excluded: Sequence[str]) -> Iterator[Candidate]:
        """Runs with an end time at or after ``ended_from`` (aware UTC), oldest end first; the
        ``excluded`` ids may be left out."""
        ...

    def describe(self, run_id: str) -> tuple[datetime, dict[str, Any]] | None:
        """The run's end time (aware UTC) and its run line; None if it is gone or unfinished."""
        ...


def poll(source: RunSource, window: RunWindow, emit: Callable[[dict[str, Any]], None], started: datetime) -> int:
    """Emit every finished run in ``window`` not handled yet; return how many were emitted.

    Only a poll that gets through advances the window: one that raises leaves it where it was,
    so the next poll lists the same period again (the runs emitted before the failure are
    remembered and not repeated).
    """
    emitted = 0
    for candidate in source.candidates(window.listing_start(), window.latest_handled(EXCLUDED_IDS_MAX)):
        if not candidate.finished or window.is_handled(candidate.run_id):
            continue
        described = source.describe(candidate.run_id)
        if described is None:
            continue
        ended, line = described
        if ended >= window.start:
            emit(line)
            emitted += 1
        # Remembered either way: a run just before the window start is listed (whole seconds)
        # but belongs to the period before the cursor.
        window.handle(candidate.run_id, ended)
    window.advance(started)
    return emitted


class ZenMLRunSource:
    """`RunSource` over the ZenML client of the active project.

    A poll that finds nothing new costs one unhydrated list call; each new run costs one
    hydrated run lookup and one hydrated listing of its steps.
    """

    def __init__(self, page_size: int) -> None:
        from zenml.client import Client

        self._client = Client()
        self._client.zen_store  # noqa: B018 (opens the store now rather than at the first poll)
        self._page_size = page_size

    def candidates(self, ended_from: datetime, excluded: Sequence[str]) -> Iterator[Candidate]:
        naive = as_utc(ended_from).replace(tzinfo=None)
        filters = {"end_time": f"gte:{naive.strftime(_FILTER_FORMAT)}"}
        if excluded:
            filters["id"] = f"notoneof:{json.dumps(list(excluded))}"
        page_number = 1
        while True:
            page = self._client.list_pipeline_runs(
                sort_by="asc:end_time", page=page_number, size=self._page_size, hydrate=False, **filters
            )
            for run in page.items:
                yield Candidate(run_id=str(run.id), finished=run.status.is_finished)
            if page.index >= page.total_pages:
                return
            page_number = page.index + 1

    def describe(self, run_id: str) -> tuple[datetime, dict[str, Any]] | None:
        try:
            # Without include_full_metadata, run_metadata holds only what was logged on the run.
            run = self._client.get_pipeline_run(run_id, allow_name_prefix_match=False, hydrate=True)
        except KeyError:
            return None  # deleted since it was listed
        if not run.status.is_finished or run.end_time is None:
            return None
        return as_utc(run.end_time), self._line(run)

    def _line(self, run: PipelineRunResponse) -> dict[str, Any]:
        from zenml.utils.pagination_utils import depaginate

        steps = depaginate(
            self._client.list_run_steps,
            pipeline_run_id=run.id,
            project=run.project_id,
            exclude_retried=True,
            hydrate=True,
            size=self._page_size,
        )
        pipeline = run.pipeline.name if run.pipeline is not None else run.config.name
        return {
            "kind": "run",
            "zenml_run_id": str(run.id),
            "zenml_run_name": run.name,
            "pipeline": pipeline,
            "status": run.status.value,
            "started_at": utc_iso(run.start_time) if run.start_time else None,
            "finished_at": utc_iso(run.end_time) if run.end_time else None,
            "parameters": json_value(dict(run.config.parameters or {})),
            "metadata": json_value(dict(run.run_metadata)),
            "steps": {s.name: {"metadata": json_value(dict(s.run_metadata))} for s in steps},
            # ZenML lists the versions of each output; the line names the first.
            "artifacts": {
                s.name: {output: str(versions[0].id) for output, versions in s.outputs.items() if versions}
                for s in steps
            },
            "tags": sorted(tag.name for tag in run.tags),
        }
