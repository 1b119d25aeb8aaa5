"""The one place that runs external programs (SAS tasks, sasversion, ...).

Commands are argument lists, never shell strings. Each run gets an optional working
directory and environment, a timeout that kills the whole process group (the real
task, not just a wrapper), and its stdout/stderr kept in a log file.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from xmmext.core.errors import UsageError

__all__ = ["RunResult", "run", "write_log", "progress_while"]


@dataclass
class RunResult:
    cmd: list
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run(cmd: list[str], *, cwd=None, env: dict | None = None, timeout: float | None = None,
        log: Path | None = None) -> RunResult:
    """Run ``cmd`` (a list), capture output, enforce ``timeout`` on the process group."""
    if isinstance(cmd, (str, bytes)) or not all(isinstance(a, str) for a in cmd):
        raise UsageError("internal: commands must be lists of strings (no shell)")
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    except FileNotFoundError:
        return RunResult(list(cmd), None, "", f"{cmd[0]}: command not found", 0.0, log=log)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)      # the task and everything it started
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    res = RunResult(list(cmd), proc.returncode, out or "", err or "", time.monotonic() - t0, timed_out, log)
    if log is not None:
        write_log(log, res)
    return res


def write_log(log: Path, res: RunResult) -> None:
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    status = "TIMEOUT" if res.timed_out else f"exit {res.returncode}"
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(res.cmd)}\n# {status} after {res.seconds:.1f} s\n")
        fh.write("--- stdout ---\n" + res.stdout + "\n--- stderr ---\n" + res.stderr + "\n")


@contextlib.contextmanager
def progress_while(desc: str, delay: float = 10.0, file=None, disable: bool | None = None):
    """A live elapsed-time line for work that has no count of its own (a step that runs
    more than ``delay`` seconds): on a terminal only (``disable=None``), gone at the end."""
    from tqdm import tqdm
    bar = tqdm(desc=desc, total=None, unit="s", delay=delay, leave=False, file=file, disable=disable,
               bar_format="{desc}: running for {elapsed}")
    stop = threading.Event()

    def tick():
        while not stop.wait(1.0):
            bar.update(1)
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        bar.close()
