"""SAS tasks: what one invocation is (:class:`SasTask`), the one runner that runs a list
of them (private folder, PFILES, copy in, judge, move out), the SAS version, and the
calibration environment of this observation."""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import xmmext.core.runner as runner
from xmmext.core.errors import DataError, DependencyError, UsageError
from xmmext.core.paths import ObsPaths

__all__ = ["ERROR_LINE", "SAS_INST", "PPS_CODE", "SasTaskError", "SasTask", "parse_sas_version", "run_task",
           "run_in_folder", "run_tasks", "sas_version", "CALIBRATED_TASKS", "observation_sas_env"]

log = logging.getLogger("xmmext.sas")
# '** task: error (...)', and when a task runs another '** caller::task: error (...)' or
# '** caller::task: fatal error (...)' (issue 13: e.g. backscale::arfgen, especget::rmfgen)
ERROR_LINE = re.compile(r"^\*\*\s*[\w.]+(?:::[\w.]+)*:\s*(?:fatal\s+)?error\b", re.IGNORECASE | re.MULTILINE)
SAS_INST = {"mos1": "EMOS1", "mos2": "EMOS2", "pn": "EPN"}
PPS_CODE = {"mos1": "M1", "mos2": "M2", "pn": "PN"}


class SasTaskError(DataError):
    """A SAS task failed (exit 4: the data could not give a result with SAS)."""


@dataclass
class SasTask:
    """One SAS task invocation: ``task param=value ...`` plus what it must produce."""
    task: str
    params: list[tuple[str, str]]
    outputs: list[str] = field(default_factory=list)     # file names/globs, relative to the run dir
    env: dict = field(default_factory=dict)

    @property
    def argv(self) -> list[str]:
        return [self.task] + [f"{k}={v}" for k, v in self.params]


_SAS_RELEASE = (
    # SAS <= 21: '[xmmsas_20131209_1901-13.5.0]' (as in the headers of real SAS files in
    # ../shared: CREATOR/XPROC0 end with it)
    re.compile(r"\[xmmsas_[0-9_]+-(\d+)\.(\d+)\.(\d+)\]"),
    # SAS >= 22: '[22.0.0-<hash>-<date>]' (issue 13; not seen on a real SAS here)
    re.compile(r"\[(\d+)\.(\d+)\.(\d+)-[0-9A-Za-z]+-[0-9]+\]"),
)


def parse_sas_version(text: str) -> tuple[int, int, int]:
    """The SAS release from sasversion's output: the bracketed release tag, in its SAS <= 21
    or SAS >= 22 form. A task's own version printed before it (``sasversion-1.3.2``) is not
    the release, so bare ``-x.y.z`` text is used only when there is no bracketed tag."""
    text = text or ""
    for rx in _SAS_RELEASE:
        m = rx.search(text)
        if m:
            return tuple(int(x) for x in m.groups())
    m = re.search(r"xmmsas_[0-9_]+-(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise DependencyError(f"cannot read the SAS version from {text!r}")
    return tuple(int(x) for x in m.groups())


# --- the runner -------------------------------------------------------------------------
def _task_env(run_dir: Path, extra: dict) -> dict:
    env = dict(os.environ)
    pf_user = run_dir / "pfiles"
    pf_user.mkdir(exist_ok=True)
    system = env.get("PFILES", "").split(";")[-1] if env.get("PFILES") else ""
    sas_dir = env.get("SAS_DIR")
    if not system and sas_dir:
        system = str(Path(sas_dir) / "config")
    env["PFILES"] = f"{pf_user};{system}"
    env["HEADASNOQUERY"] = "1"
    env["HEADASPROMPT"] = "/dev/null"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_task(task: SasTask, dest_dir: Path, log_dir: Path, timeout: float = 7200.0) -> list[Path]:
    """Run one SAS task in a private temp dir; move its outputs to ``dest_dir``."""
    return run_tasks([task], dest_dir, log_dir, timeout)


def run_in_folder(task: SasTask, folder: Path, log_dir: Path, timeout: float = 7200.0) -> list[Path]:
    """Run a task whose file arguments are bare names of files in ``folder`` (they are
    copied in, so in-place tasks such as backscale modify the copy)."""
    return run_tasks([task], folder, log_dir, timeout, copy_in=True)


def run_tasks(tasks: list[SasTask], dest_dir: Path, log_dir: Path, timeout: float = 7200.0,
              copy_in: bool = False) -> list[Path]:
    """THE runner of SAS tasks. The tasks run one after the other in ONE private temp dir
    inside ``dest_dir`` (a later task may use what an earlier one left there, e.g.
    epchain's kept raw files), each with its own PFILES and HEADASNOQUERY, a timeout that
    kills its process group and its output in ``log_dir``/sas_<task>.log. Each task is
    judged (finished in time, exit status 0, no SAS error line, every expected output
    there); then the outputs - and, with ``copy_in``, the files that were copied in from
    ``dest_dir`` and may have been modified - are moved into ``dest_dir``.
    Raises SasTaskError (exit 4) or DependencyError (task not on PATH, exit 3)."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"xmmext_{tasks[0].task}_", dir=dest_dir) as tmp:
        run_dir = Path(tmp)
        copied: set[str] = set()
        produced: list[Path] = []
        for task in tasks:
            if copy_in:
                copied |= _copy_inputs(task, dest_dir, run_dir)
            log_path = Path(log_dir) / f"sas_{task.task}.log"
            res = runner.run(task.argv, cwd=run_dir, env=_task_env(run_dir, task.env), timeout=timeout,
                             log=log_path)
            _judge(task, res, log_path)
            for pattern in task.outputs:
                hits = sorted(run_dir.glob(pattern))
                if not hits:
                    raise SasTaskError(f"SAS task {task.task} did not produce {pattern}", log_path)
                produced.extend(hits)
        produced += [run_dir / n for n in sorted(copied) if run_dir / n not in produced]
        finals = []
        for h in produced:
            final = dest_dir / h.name
            os.replace(h, final)
            finals.append(final)
        return finals


def _copy_inputs(task: SasTask, folder: Path, run_dir: Path) -> set[str]:
    """Copy the files a task names by bare name from ``folder`` into its run dir."""
    copied = set()
    for _, v in task.params:
        # parameter values are file names or expressions; only short bare names can be files
        if v and "/" not in v and len(v) < 255 and (folder / v).is_file():
            shutil.copyfile(folder / v, run_dir / v)
            copied.add(v)
    return copied


def sas_version() -> tuple[int, int, int]:
    exe = shutil.which("sasversion")
    if not exe:
        raise DependencyError("sasversion not on PATH: SAS is not initialised")
    res = runner.run([exe], timeout=60)
    return parse_sas_version(res.stdout + res.stderr)


CALIBRATED_TASKS = ("atthkgen", "eexpmap", "edetect_chain", "backscale", "rmfgen", "arfgen")


def observation_sas_env(paths: ObsPaths) -> dict:
    """SAS_CCF and SAS_ODF of THIS observation (results/<OBSID>/sas/ccf.cif and *SUM.SAS,
    made by step 1 with --backend sas), for the tasks that read calibration or the ODF
    (backscale, rmfgen, arfgen, atthkgen, eexpmap, edetect_chain): a SAS_CCF left in the
    shell from another observation would silently give wrong responses."""
    work = paths.results / "sas"
    ccf = work / "ccf.cif"
    sums = sorted(work.glob("*SUM.SAS"))
    if not ccf.exists() or not sums:
        raise UsageError("the SAS backend needs this observation's ccf.cif and *SUM.SAS (cifbuild, odfingest): "
                         "run step 1 with --backend sas first", work)
    return {"SAS_CCF": str(ccf), "SAS_ODF": str(sums[0])}


def _judge(task: SasTask, res, log_path: Path) -> None:
    """Success = finished in time, no '** task: error' line, exit status 0."""
    if res.timed_out:
        raise SasTaskError(f"SAS task {task.task} timed out and was killed", log_path)
    if res.returncode is None:
        raise DependencyError(f"SAS task {task.task} not found on PATH (is SAS initialised?)", log_path)
    err = ERROR_LINE.search(res.stdout + "\n" + res.stderr)
    if err:
        line = (res.stdout + "\n" + res.stderr)[err.start():].splitlines()[0].strip()
        raise SasTaskError(f"SAS task {task.task} reported: {line}", log_path)
    if res.returncode != 0:
        raise SasTaskError(f"SAS task {task.task} exited with status {res.returncode}", log_path)


