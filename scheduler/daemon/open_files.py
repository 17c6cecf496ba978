"""Room for runs: the daemon raises its soft limit of open files at start.

Every run costs the daemon descriptors (its log file, the child's pipes), and so does every API
connection and watched folder. Linux's usual soft limit of 1024 is a default, not a policy, and
the hard limit is usually far higher; with the API's own connection cap well below the raised
limit, connections cannot take the descriptors runs need.
"""

from __future__ import annotations

import logging
import resource

from scheduler import tuning

log = logging.getLogger(__name__)


def raise_open_files_limit(wanted: int = tuning.OPEN_FILES_WANTED) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit, never down);
    return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:  # a container may forbid it: keep what we have
        log.warning("could not raise the open files limit from %d to %d: %s", soft, target, exc)
        return soft
    log.info("open files limit raised from %d to %d (hard limit %s)", soft, target, hard)
    return target


def check_connection_room(limit: int, max_connections: int) -> None:
    """Warn when API connections alone could use most of the descriptors."""
    if max_connections * 2 > limit:
        log.warning(
            "api_max_connections (%d) is more than half the open files limit (%d): idle connections could "
            "keep runs from launching; lower it or raise LimitNOFILE / ulimit -n",
            max_connections,
            limit,
        )
