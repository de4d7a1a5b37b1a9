"""Atomic writes leave no temporary file behind: not on error, SIGTERM, nor (at the next write) SIGKILL."""

import signal
import subprocess
import sys

import pytest

from m3dt.io import atomic_path, remove_stale_temps, write_text_atomic

WRITER = """
import sys, time
from m3dt.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"x" * 1000)
    print("writing", flush=True)
    time.sleep(60)
"""


def killed_writer(target, sig):
    """A process killed by `sig` in the middle of an atomic write of `target`."""
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(sig)
    assert p.wait(timeout=30) == -sig  # it still dies of the signal
    return p


def temps(target):
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


def test_exception_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert not target.exists() and not temps(target)


def test_sigterm_during_a_write_removes_the_temp_file(tmp_path):
    target = tmp_path / "last.pt"
    killed_writer(target, signal.SIGTERM)
    assert not target.exists() and not temps(target)


def test_sigkill_temp_file_is_removed_at_the_next_write(tmp_path):
    target = tmp_path / "last.pt"
    killed_writer(target, signal.SIGKILL)
    assert len(temps(target)) == 1  # SIGKILL cannot be handled
    (tmp_path / ".last.pt.oldstyle.tmp").write_text("a temp of an older version (no pid)")
    others = [tmp_path / ".other.pt.99999999.x.tmp", tmp_path / ".last.pt.bak.99999999.x.tmp"]
    for p in others:
        p.write_text("another target's temp stays")
    write_text_atomic(target, "done")
    assert target.read_text() == "done" and not (tmp_path / ".last.pt.oldstyle.tmp").exists()
    assert not [p for p in temps(target) if p not in others] and all(p.exists() for p in others)


def test_a_live_writers_temp_file_is_kept(tmp_path):
    target = tmp_path / "x.csv"
    with atomic_path(target) as tmp:
        tmp.write_text("in progress")
        assert remove_stale_temps(target) == [] and tmp.exists()
    assert target.read_text() == "in progress"
