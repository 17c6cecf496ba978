"""Follow the ZenML store: stream every pipeline run that finishes, as one JSON line each.

Run as ``python -m scheduler.child.follower --since ISO8601 [--interval 1.0] [--overlap 60]
[--page 100] [--alive 10]`` with the project root as working directory, stdin a pipe that the daemon holds
open, and stdout read line by line. One follower runs beside each daemon for as long as it runs;
the daemon keeps the cursor (the end time of the last run it has taken in) and passes it as
``--since`` when it starts a follower again.

Lines on stdout, each a JSON object flushed as soon as it is written (times are ISO-8601 UTC
with a ``+00:00`` offset)::

    {"kind": "ready", "at": T}            the store is initialised and reachable: polling starts
    {"kind": "run", "zenml_run_id": str, "zenml_run_name": str, "pipeline": str,
     "status": str, "started_at": T | null, "finished_at": T, "parameters": {...},
     "metadata": {...}, "steps": {step: {"metadata": {...}}},
     "artifacts": {step: {output: artifact version id}}, "tags": [str]}
    {"kind": "caught-up", "at": T}        once, after the first poll: every run that ended since
                                          the cursor has been sent
    {"kind": "alive", "at": T}            after a poll when nothing was written for --alive s
    {"kind": "error", "message": str}     a poll (or the store set-up) failed; retried at the
                                          next interval; the traceback goes to stderr (once
                                          while the same error repeats)

Runs are those of the active ZenML project whose end time is at ``--since`` minus
``--overlap`` or later, whatever started them, with a finished status (`ExecutionStatus`
values such as "completed", "failed", "cached", "stopped"), oldest end first, each id once per
process. The overlap catches runs that become visible with an end time already in the past (a
slow commit, another host's clock); the daemon drops the ids it has already seen.
``metadata`` is what was logged on the run itself, ``steps.<s>.metadata`` what was logged on
that step; values are plain JSON (see `scheduler.child.followed_runs.json_value`: NaN and
infinities become the strings "nan", "inf", "-inf"). A run line that would exceed
`MAX_FOLLOWER_LINE_BYTES` is sent with ``"truncated": true`` and its parameters and metadata
emptied (then, if still too long, its steps, artifacts and tags).

Everything else that writes to stdout (ZenML's logging, prints) is sent to stderr at the file
descriptor level, so stdout carries only these lines.

The process ends with exit status 0 on SIGTERM or SIGINT (also while it sleeps or waits for the
store), when stdin reaches end of file (the daemon is gone: a stdin of ``/dev/null`` ends it at
once) and, quietly, when stdout is closed. Exit status 2 is bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import IO, Any

from scheduler.child.followed_runs import RunWindow, ZenMLRunSource, poll
from scheduler.child.protocol import MAX_FOLLOWER_LINE_BYTES
from scheduler.child.store_setup import ensure_store_ready

EXIT_OK = 0
EXIT_USAGE = 2

_MAX_MESSAGE_CHARS = 2000


class StopRequested(BaseException):
    """Raised in the main thread to end the follower: a BaseException, so that no ``except
    Exception`` in ZenML or here swallows it."""


class Stopper:
    """Turns SIGTERM, SIGINT and the end of stdin into a prompt `StopRequested`.

    The signal handler raises at once, wherever the main thread is (a sleep, a store query, the
    lock wait of the store set-up), except while a line is being written: then it raises once
    the line is complete, so the daemon never reads half a line.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._writing = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._poller = select.poll()
        self._poller.register(self._wake_read, select.POLLIN)
        self._output: int | None = None

    def watch_output(self, fd: int) -> None:
        """Also stop when the reader of ``fd`` goes away (a pipe reports an error then)."""
        self._output = fd
        self._poller.register(fd, 0)  # POLLERR and POLLHUP are always reported

    def install(self) -> None:
        """Handle the stop signals and watch stdin from now on (call before importing ZenML)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        # A signal delivered to another thread (ZenML's, or the stdin watcher) still wakes the
        # main thread's sleep through this pipe.
        signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
        threading.Thread(target=self._watch_stdin, name="stdin-watch", daemon=True).start()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.reason = self.reason or f"signal {signum}"
        if not self._writing:
            raise StopRequested(self.reason)

    def _watch_stdin(self) -> None:
        try:
            while os.read(0, 65536):
                pass  # nothing is ever sent on stdin; only its end matters
        except OSError:
            pass  # no usable stdin counts as its end
        self.reason = self.reason or "stdin closed"
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold a stop signal back until the enclosed write is done."""
        self._writing = True
        try:
            yield
        finally:
            self._writing = False
        if self.reason:
            raise StopRequested(self.reason)

    def sleep(self, seconds: float) -> None:
        """Sleep, but raise `StopRequested` as soon as a stop is asked for, and
        `BrokenPipeError` as soon as the watched output has lost its reader."""
        events = self._poller.poll(max(0, int(seconds * 1000))) if seconds > 0 else []
        if any(fd == self._output and mask & (select.POLLERR | select.POLLHUP) for fd, mask in events):
            raise BrokenPipeError("the reader of stdout has gone")
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass
        if self.reason:
            raise StopRequested(self.reason)


class Channel:
    """The protocol's stdout: one JSON object per line, flushed, never torn by a stop."""

    def __init__(self, stream: IO[str], stopper: Stopper) -> None:
        self._stream = stream
        self._stopper = stopper
        self.last_sent = time.monotonic()

    def send(self, line: dict[str, Any]) -> None:
        text = encode_line(line)
        with self._stopper.writing():
            self._stream.write(text + "\n")
            self._stream.flush()
        self.last_sent = time.monotonic()

    def note(self, kind: str) -> None:
        self.send({"kind": kind, "at": datetime.now(timezone.utc).isoformat()})


def encode_line(line: dict[str, Any]) -> str:
    """``line`` as one line of ASCII JSON under `MAX_FOLLOWER_LINE_BYTES`, slimmed if need be."""
    text = json.dumps(line, allow_nan=False)
    if len(text) < MAX_FOLLOWER_LINE_BYTES or line.get("kind") != "run":
        return text
    slim = {**line, "parameters": {}, "metadata": {}, "truncated": True}
    slim["steps"] = {step: {"metadata": {}} for step in line.get("steps", {})}
    text = json.dumps(slim, allow_nan=False)
    if len(text) < MAX_FOLLOWER_LINE_BYTES:
        return text
    return json.dumps({**slim, "steps": {}, "artifacts": {}, "tags": []}, allow_nan=False)


def one_line(exc: BaseException) -> str:
    """The exception's type and message on one line, bounded."""
    message = " ".join(str(exc).split())
    return (f"{type(exc).__name__}: {message}" if message else type(exc).__name__)[:_MAX_MESSAGE_CHARS]


def _connect(page_size: int) -> ZenMLRunSource:
    """Initialise (if need be) and open the ZenML store."""
    # Without a source root even read-only queries fail under ``python -m`` (ZenML would take
    # this package's folder); no user code is imported.
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(os.getcwd())
    ensure_store_ready()
    return ZenMLRunSource(page_size)


def follow(args: argparse.Namespace, channel: Channel, stopper: Stopper) -> None:
    """Poll until stopped (returns only by raising `StopRequested` or `BrokenPipeError`)."""
    window = RunWindow.since(args.since, timedelta(seconds=args.overlap))
    source: ZenMLRunSource | None = None
    caught_up = False
    last_error = ""
    while True:
        began = time.monotonic()
        try:
            if source is None:
                source = _connect(args.page)
                channel.note("ready")
            poll(source, window, channel.send, datetime.now(timezone.utc))
            if not caught_up:
                channel.note("caught-up")
                caught_up = True
            last_error = ""
        except BrokenPipeError:
            raise
        except Exception as exc:
            message = one_line(exc)
            if message != last_error:  # a store that stays down is one traceback, not one a second
                traceback.print_exc()
                sys.stderr.flush()
            last_error = message
            channel.send({"kind": "error", "message": message})
        if time.monotonic() - channel.last_sent >= args.alive:
            channel.note("alive")
        stopper.sleep(args.interval - (time.monotonic() - began))


def _aware_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"needs a UTC offset (e.g. +00:00): {text!r}")
    return moment.astimezone(timezone.utc)


def _bounded(kind: type, low: float, high: float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}: {text!r}")
        return value

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scheduler.child.follower", description=__doc__.split("\n")[0])
    parser.add_argument("--since", required=True, type=_aware_time, help="cursor: ISO-8601 time with offset")
    parser.add_argument("--interval", type=_bounded(float, 0.05, 3600), default=1.0, help="seconds between polls")
    parser.add_argument("--overlap", type=_bounded(float, 0, 86400), default=60.0, help="seconds listed again")
    parser.add_argument("--page", type=_bounded(int, 1, 1000), default=100, help="runs per store listing page")
    parser.add_argument("--alive", type=_bounded(float, 0, 3600), default=10.0, help="seconds of silence before alive")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m scheduler.child.follower --since ISO8601 ...``."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse has printed the usage
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    stopper = Stopper()
    stopper.install()
    # The protocol keeps the real stdout; fd 1 (and with it anything ZenML prints) goes to stderr.
    sys.stdout.flush()
    protocol_out = os.fdopen(os.dup(1), "w", encoding="ascii")
    os.dup2(2, 1)
    stopper.watch_output(protocol_out.fileno())
    channel = Channel(protocol_out, stopper)
    try:
        follow(args, channel, stopper)
    except StopRequested as stop:
        print(f"follower stopping: {stop}", file=sys.stderr, flush=True)
    except BrokenPipeError:
        # Nobody reads any more. Point the descriptor at /dev/null so the final flush at exit
        # stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), protocol_out.fileno())
    return EXIT_OK


if __name__ == "__main__":
    code = main()
    # Tearing ZenML's modules down at exit takes over a second, and nothing in it matters to a
    # process that only read from the store.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
