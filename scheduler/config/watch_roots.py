"""Folders a watch job may not watch: where the daemon writes its own files, and kernel pseudo
file systems.

A watch that sees the state directory triggers itself: every run writes a log there and every
decision writes the database, and each write is a new file or a change to one. Pseudo file
systems (/proc, /sys, /dev, cgroup mounts...) hold kernel views, not data: their "files" change
on every read and never settle into something a pipeline should get.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# Kernel file systems that hold no user data. tmpfs is not one of them: /tmp and /dev/shm are
# ordinary places to drop files.
VIRTUAL_FS_TYPES = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
    "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "efivarfs", "binfmt_misc", "selinuxfs",
    "rpc_pipefs", "nsfs",
})  # fmt: skip
# Refused by path as well, since in a container /dev and /sys/fs/cgroup are often plain tmpfs.
VIRTUAL_TREES = ("/proc", "/sys", "/dev")
REAL_TREES_IN_DEV = ("/dev/shm",)  # shared memory: a tmpfs where files may be dropped
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class StatePaths:
    """Where the daemon writes: its state directory (run logs, the default database) and a SQLite
    database kept elsewhere."""

    folder: Path
    database: Path | None = None


class WatchRoots:
    """Judges the watch folders of one load of schedules.yaml; the mount table is read once, on
    the first folder."""

    def __init__(self, state: StatePaths | None) -> None:
        self.state: StatePaths | None = None
        if state is not None:  # resolved once: a symlinked state directory is still the state directory
            database = Path(os.path.realpath(state.database)) if state.database is not None else None
            self.state = StatePaths(Path(os.path.realpath(state.folder)), database)
        self._mounts: list[tuple[str, str]] | None = None

    def problem(self, root: Path, recursive: bool) -> str | None:
        """Why `root` cannot be watched, or None. Paths are compared after resolving symlinks, so
        a link to the state directory is refused like the directory itself."""
        real = Path(os.path.realpath(root))
        if self._mounts is None:
            self._mounts = read_mounts()
        fs_type = virtual_fs_of(real, self._mounts)
        if fs_type is not None:
            return (
                f"watch.path {root} is on a kernel pseudo file system ({fs_type}): its entries are not data "
                "files and change on every read; watch a folder of real files"
            )
        return None if self.state is None else _state_problem(root, real, recursive, self.state)


def _state_problem(root: Path, real: Path, recursive: bool, state: StatePaths) -> str | None:
    folder = state.folder
    move = "or move the state directory (--state-dir, ZENML_SCHEDULER_STATE_DIR)"
    if real == folder or real.is_relative_to(folder):
        return (
            f"watch.path {root} is inside the state directory {folder}, where the daemon writes run logs and its "
            f"database: each of its own writes would start a run; watch another folder {move}"
        )
    if recursive and folder.is_relative_to(real):
        return (
            f"watch.path {root} with recursive: true contains the state directory {folder}, where the daemon "
            f"writes run logs and its database: each of its own writes would start a run; watch a sub-folder "
            f"that does not hold it, use recursive: false, {move}"
        )
    database = state.database
    if database is not None and (database.parent == real or (recursive and database.is_relative_to(real))):
        return (
            f"watch.path {root} sees the state database {database}: each write of the daemon would start a "
            "run; keep the database in a folder that is not watched"
        )
    return None


def virtual_fs_of(real: Path, mounts: list[tuple[str, str]]) -> str | None:
    """The pseudo file system `real` (a resolved path) lies on, or None for a real one; `mounts`
    as `read_mounts` gives them."""
    text = str(real)
    if not any(_within(text, tree) for tree in REAL_TREES_IN_DEV):
        for tree in VIRTUAL_TREES:
            if _within(text, tree):
                return tree
    fs_type = None
    for point, kind in mounts:  # the longest mount point above; a later mount on a point hides earlier ones
        if _within(text, point) and (fs_type is None or len(point) >= len(fs_type[0])):
            fs_type = (point, kind)
    return fs_type[1] if fs_type is not None and fs_type[1] in VIRTUAL_FS_TYPES else None


def read_mounts() -> list[tuple[str, str]]:
    """(mount point, file system type) of every mount, from /proc/self/mountinfo in its order;
    empty where that cannot be read (not Linux)."""
    try:
        lines = MOUNTINFO.read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        before, sep, after = line.partition(" - ")
        fields, kinds = before.split(), after.split()
        if sep and len(fields) >= 5 and kinds:
            mounts.append((_unescape(fields[4]), kinds[0]))
    return mounts


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda found: chr(int(found[1], 8)), field) if "\\" in field else field
