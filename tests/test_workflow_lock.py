"""Stale Snakemake locks: cleared only when no instance that could hold them is alive."""

import os
import socket
import subprocess
import sys

from m3dt.workflow_lock import INSTANCES, clear_stale_locks, register_instance


def locked(tmp_path):
    sdir = tmp_path / ".snakemake"
    (sdir / "locks").mkdir(parents=True)
    (sdir / "locks" / "0.input.lock").write_text("a\n")
    (sdir / "locks" / "0.output.lock").write_text("b\n")
    (sdir / INSTANCES).mkdir()
    return sdir


def dead_instance(sdir):
    """The instance file a Snakemake killed with -9 leaves: its process is gone."""
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid(), open(f'/proc/{os.getpid()}/stat')"
                        ".read().rsplit(')', 1)[1].split()[19])"], capture_output=True, text=True, check=True)
    pid, start = p.stdout.split()
    (sdir / INSTANCES / f"{socket.gethostname()}.{pid}.{start}").touch()


def test_lock_of_a_dead_instance_is_removed(tmp_path):
    sdir = locked(tmp_path)
    dead_instance(sdir)
    msg = clear_stale_locks(sdir)
    assert msg and "removed the stale lock" in msg
    assert not list((sdir / "locks").iterdir()) and not list((sdir / INSTANCES).iterdir())
    assert clear_stale_locks(sdir) is None  # nothing left to do


def test_lock_of_a_live_or_foreign_instance_is_kept(tmp_path):
    sdir = locked(tmp_path)
    dead_instance(sdir)
    me = register_instance(sdir)  # this process: alive
    assert me.name.startswith(f"{socket.gethostname()}.{os.getpid()}.")
    assert clear_stale_locks(sdir) is None and len(list((sdir / "locks").iterdir())) == 2
    me.unlink()
    (sdir / INSTANCES / "other-host.1.1").touch()  # another host's processes cannot be checked
    assert clear_stale_locks(sdir) is None and len(list((sdir / "locks").iterdir())) == 2


def test_unregistered_lock_is_kept(tmp_path):
    sdir = locked(tmp_path)
    assert clear_stale_locks(sdir) is None and len(list((sdir / "locks").iterdir())) == 2
