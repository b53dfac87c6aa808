"""Which process this is, and whether another process named the same way is still alive.

Lock rows and run rows name the process that holds or runs them as ``HOST:PID`` (locks add a random part:
pids are reused). ``HOST`` is the host name plus, on Linux, the inode of the process's PID namespace: two
containers that share a host name but not a PID namespace never take each other's pids for their own.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path


@cache
def this_host() -> str:
    """This machine (and PID namespace) as process names spell it."""
    name = socket.gethostname() or "localhost"
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux, or /proc is hidden: the host name alone
        return name
    return f"{name}~{namespace}"


def this_process() -> str:
    """``HOST:PID`` of this process."""
    return f"{this_host()}:{os.getpid()}"


def is_dead_here(name: str | None) -> bool:
    """True when ``name`` (``HOST:PID[:...]``) is a process of this host that no longer runs.

    A process of another host, an unreadable name, or a pid that exists (even if it was reused by another
    program) is never called dead: the caller then waits for the lock's expiry, as before.
    """
    if not name:
        return False
    host, _, rest = name.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != this_host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    # A killed child its parent has not reaped yet still answers signal 0: it is a zombie, and gone all the same.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
