"""What is in a watched folder, as one watch rule sees it: the files its patterns select (not
ignored, not the ready marker, sub-folders only when recursive), their size and mtime, their
content digest, and whether a file may be handed to a pipeline at all."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from typing import Any

from scheduler.config.watch_spec import WatchSpec
from scheduler.watch.arrivals import Stat


def names_matcher(patterns: list[str]) -> Callable[[str], Any]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


def stat_of(path: str) -> Stat | None:
    """Size and mtime of a regular file (following links); None when gone or not a file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Stat(st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def content_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FolderListing:
    def __init__(self, root: str, spec: WatchSpec) -> None:
        self.root = root
        self.spec = spec
        self.wanted = names_matcher(spec.patterns)
        self.ignored = names_matcher(spec.ignore)

    def files(self, folder: str | None = None, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(relative '/'-separated name, path) of every selected file under `folder` (default: the root)."""
        try:
            listing = os.scandir(self.root if folder is None else folder)
        except OSError:
            return
        with listing:  # one entry at a time: a folder of 100,000 files is never held in memory at once
            for entry in listing:
                if self.ignored(entry.name):
                    continue
                rel = prefix + entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    if self.spec.recursive:
                        yield from self.files(entry.path, rel + "/")
                elif self.selects(entry.name):
                    yield rel, entry.path

    def selects(self, name: str) -> bool:
        return bool(self.wanted(name)) and name != self.spec.ready_marker

    def relative(self, path: str) -> str | None:
        """The name an event's path has in this rule, or None when the rule does not cover it
        (outside the folder, ignored on the way, or in a sub-folder of a non-recursive rule)."""
        rel = os.path.relpath(path, self.root)
        if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
            return None
        rel = rel.replace(os.sep, "/")
        parts = rel.split("/")
        if any(self.ignored(part) for part in parts) or (len(parts) > 1 and not self.spec.recursive):
            return None
        return rel

    def check(self, rel: str) -> tuple[str, Stat | str]:
        """(resolved path, its Stat) for a file that may be handed to a pipeline, or
        (resolved path, why not): a file must stay inside the folder, be regular and readable."""
        real = os.path.realpath(os.path.join(self.root, rel))
        real_root = os.path.realpath(self.root)
        if os.path.commonpath([real, real_root]) != real_root:
            return real, "resolves outside the watched folder"
        current = stat_of(real)
        if current is None:
            return real, "not a regular file"
        if not os.access(real, os.R_OK):
            return real, "not readable"
        return real, current
