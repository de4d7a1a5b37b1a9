"""Small I/O helpers shared by every step: atomic writes and script logging."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    The temporary file is `.<name>.<pid>.<random>.tmp`. On any exception, and on SIGTERM
    (when the process has no SIGTERM handler of its own), it is removed, so no
    half-written output is left; a process killed with SIGKILL cannot clean up, so the
    temporary files of `path` whose process is gone are removed when `path` is next written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    with _sigterm_cleans_up():
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
            os.replace(tmp_path, target)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove the temporary files `atomic_path` left beside `target` in processes that are
    gone (killed during a write). Returns the removed paths."""
    target = Path(target)
    # .<name>.<pid>.<mkstemp's random letters>.tmp (older versions: without <pid>.)
    mine = re.compile(rf"^\.{re.escape(target.name)}\.(?:(\d+)\.)?[A-Za-z0-9_]+\.tmp$")
    removed = []
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        m = mine.match(tmp.name)
        if m is None or (m.group(1) and _process_exists(int(m.group(1)))):
            continue  # another target's, or a live writer's (ours or another process's)
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Terminated(BaseException):
    """SIGTERM arrived during an atomic write (raised so that `finally` blocks run)."""


@contextlib.contextmanager
def _sigterm_cleans_up() -> Iterator[None]:
    """While active, SIGTERM raises `_Terminated` (so the temporary file is removed), then
    the signal is delivered again with its default action: the process still dies of it."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    signal.signal(signal.SIGTERM, handler)
    terminated = False
    try:
        yield
    except _Terminated:
        terminated = True
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if terminated:
        os.kill(os.getpid(), signal.SIGTERM)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


@contextlib.contextmanager
def log_to(log_path: str | os.PathLike | None, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send the `m3dt` logger (and warnings) to `log_path` (and stderr) for one workflow job.

    Used by every `workflow/scripts/*.py`; an exception is logged with its traceback
    before it propagates, so the job's log says why it failed.
    """
    logger = logging.getLogger("m3dt")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    old_level = logger.level
    logger.setLevel(level)
    logging.captureWarnings(True)
    try:
        yield logger
    except BaseException:
        logger.exception("job failed")
        raise
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)


_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_WORDS = {"true": True, "True": True, "false": False, "False": False, "null": None, "~": None}


def typed_strings(value: Any) -> Any:
    """`value` with strings that spell a number, true/false or null turned into them, recursively.

    Snakemake parses the nested values of `--config key={a: 1}` with YAML's BaseLoader, so
    they arrive as strings ("1"); this gives them the types a config file would have
    ("1e-4" becomes a float too). Other strings (names, paths, "auto") are left alone.
    """
    if isinstance(value, dict):
        return {k: typed_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed_strings(v) for v in value]
    if isinstance(value, str):
        text = value.strip()
        if _INT.match(text):
            return int(text)
        if _FLOAT.match(text):
            return float(text)
        if text in _WORDS:
            return _WORDS[text]
    return value
