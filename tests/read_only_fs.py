"""A folder that is read-only for one subprocess: a read-only bind mount of it in a mount
namespace of that process's own (`unshare --mount`), so nothing else on the machine sees it.
chmod would not do: the tests run as root, whom file modes do not stop."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

MOUNT_AND_RUN = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'


def read_only_command(folder: Path, argv: list[str]) -> list[str]:
    """`argv`, run where `folder` (and everything under it) is mounted read-only."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT_AND_RUN, "sh", str(folder), *argv]


@functools.cache
def unavailable() -> str | None:
    """Why no read-only mount can be made here, or None when it can."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare or mount is not installed"
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run(
            read_only_command(Path(folder), ["sh", "-c", f"! touch {folder}/probe 2>/dev/null"]),
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            return f"cannot make a read-only bind mount here (needs root and mount namespaces): {probe.stderr.strip()}"
    return None
