"""Stale Snakemake locks: recognise and clear the lock a killed Snakemake left behind.

Snakemake locks its working directory with files in `.snakemake/locks/` that say nothing
about who wrote them, so after a `kill -9` the next run stops with "Directory cannot be
locked" until the user runs `--unlock`. The workflow (`workflow/rules/common.smk`) calls
`clear_stale_locks` and then `register_instance` when its main Snakemake process starts:
every Snakemake instance of this workflow leaves a file `.snakemake/m3dt_instances/
<host>.<pid>.<start time>` for as long as it lives. Locks are cleared only when no
instance that could hold them is alive, i.e. every registered instance ran on this host
and its process is gone (a reused PID is told apart by its start time), and no job script
a killed instance started is still running. An instance on another host, or locks no
instance registered, are left alone (then `snakemake --unlock` is the user's call).
Stdlib only: the Snakefile imports it before any job runs.
"""

from __future__ import annotations

import atexit
import os
import socket
from pathlib import Path

INSTANCES = "m3dt_instances"


def _start_time(pid: int) -> str | None:
    """Start time of process `pid` (clock ticks after boot; Linux), "" where /proc is
    absent but the process exists, None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
    except (OSError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def _alive(name: str, host: str) -> bool:
    """Whether the instance file `name` (`<host>.<pid>.<start>`) may belong to a live process."""
    try:
        inst_host, pid_text, start = name.rsplit(".", 2)
        pid = int(pid_text)
    except ValueError:
        return True  # not ours to judge
    if inst_host != host:
        return True  # cannot look at another host's processes
    now = _start_time(pid)
    return now is not None and (now == "" or now == start)


def _running_jobs(workdir: Path) -> list[int]:
    """PIDs of job scripts (`.snakemake/scripts/…`) running in `workdir` (Linux; [] elsewhere)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes()
            if b".snakemake/scripts/" in cmd and Path(os.readlink(proc / "cwd")) == workdir:
                pids.append(int(proc.name))
        except OSError:
            continue
    return sorted(pids)


def clear_stale_locks(snakemake_dir: str | os.PathLike = ".snakemake") -> str | None:
    """Remove the locks of `snakemake_dir` when no instance that could hold them lives.

    Returns a one-line message saying what was done (or why a lock was kept), None when
    there was no lock."""
    sdir = Path(snakemake_dir).resolve()
    locks = sorted((sdir / "locks").glob("*.lock"))
    if not locks:
        return None
    inst_dir = sdir / INSTANCES
    instances = sorted(p.name for p in inst_dir.glob("*")) if inst_dir.is_dir() else []
    host = socket.gethostname()
    live = [n for n in instances if _alive(n, host)]
    if not instances or live:
        return None  # a live (or unknown) Snakemake holds the lock: Snakemake reports it
    jobs = _running_jobs(sdir.parent)
    if jobs:
        return (f"kept the lock of a killed Snakemake: its jobs (pids {jobs}) still run; "
                f"wait for them or end them, then rerun")
    for p in locks:
        p.unlink(missing_ok=True)
    for n in instances:
        (inst_dir / n).unlink(missing_ok=True)
    return f"removed the stale lock of a killed Snakemake run ({', '.join(instances)}) in {sdir / 'locks'}"


def register_instance(snakemake_dir: str | os.PathLike = ".snakemake") -> Path:
    """Mark this process as a live Snakemake instance until it exits."""
    inst_dir = Path(snakemake_dir).resolve() / INSTANCES
    inst_dir.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    me = inst_dir / f"{socket.gethostname()}.{pid}.{_start_time(pid) or 0}"
    me.touch()
    atexit.register(me.unlink, missing_ok=True)
    return me
