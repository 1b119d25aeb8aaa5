"""SAS backend: building SAS task command lines, and running them safely.

Building a command (pure functions returning :class:`SasTask`) is kept apart from
running it (:func:`run_task`), as DAXA separates its command builders from its runner.
Each task runs in its own temporary folder with its own PFILES (so parallel workers
never share parameter files), HEADASNOQUERY set, a timeout that kills the real process
group, stdout/stderr kept in ``results/<OBSID>/logs/``, and success decided from the
expected outputs existing and no ``** task: error`` line.

Parameter names follow the SAS task documentation. Version differences handled:
  * espfilt: SAS >= 20 takes ``eventfile=`` and offers ``method=histogram`` with
    ``withlongnames=yes`` outputs ``<inst><exp>-gti-<elow>-<ehigh>.fits``; older SAS
    takes ``eventset=`` and only ``method=ratio``.
  * SAS >= 22 espfilt no longer applies the FLAG filter: the pipeline applies the
    standard expression (with FLAG==0) itself in the final evselect, on every version.

NOT RUN AGAINST A REAL SAS: no SAS is installed where this was written. The command
lines and the output/error handling are tested with stand-in executables.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from astropy.io import fits

from . import gti as G
from . import runner
from .errors import DataError, DependencyError
from .fileio import write_json
from .layout import ObsPaths

log = logging.getLogger("xmmext.sas")
ERROR_LINE = re.compile(r"^\*\*\s*[\w.]+:\s*error\b", re.IGNORECASE | re.MULTILINE)
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


def parse_sas_version(text: str) -> tuple[int, int, int]:
    """'xmmsas_20230412_1735-21.0.0' -> (21, 0, 0)."""
    m = re.search(r"-(\d+)\.(\d+)\.(\d+)", text or "")
    if not m:
        raise DependencyError(f"cannot read the SAS version from {text!r}")
    return tuple(int(x) for x in m.groups())


# --- command builders (pure) ------------------------------------------------------------
def cifbuild(odf_dir: Path) -> SasTask:
    return SasTask("cifbuild", [("withccfpath", "no"), ("analysisdate", "now"),
                                ("category", "XMMCCF"), ("calindexset", "ccf.cif"), ("fullpath", "yes")],
                   ["ccf.cif"], {"SAS_ODF": str(odf_dir)})


def odfingest(odf_dir: Path, ccf: Path) -> SasTask:
    return SasTask("odfingest", [("odfdir", str(odf_dir)), ("outdir", ".")], ["*SUM.SAS"],
                   {"SAS_ODF": str(odf_dir), "SAS_CCF": str(ccf)})


def emchain(sum_sas: Path, ccf: Path) -> SasTask:
    return SasTask("emchain", [], ["P*M[12]*MIEVLI0000.FIT"], {"SAS_ODF": str(sum_sas), "SAS_CCF": str(ccf)})


def epchain(sum_sas: Path, ccf: Path, out_of_time: bool = False) -> SasTask:
    params = [("withoutoftime", "yes" if out_of_time else "no")]
    out = ["P*PN*OOEVLI0000.FIT"] if out_of_time else ["P*PN*PIEVLI0000.FIT"]
    return SasTask("epchain", params, out, {"SAS_ODF": str(sum_sas), "SAS_CCF": str(ccf)})


def espfilt(eventfile: Path, cam: str, exp_id: str, sas_version: tuple, ccf: Path, method: str = "histogram",
            elow: int = 2500, ehigh: int = 8500, rangescale: float | None = None, allowsigma: float = 3.0,
            ootfile: Path | None = None) -> SasTask:
    """espfilt with the parameter names of the SAS version in use."""
    rs = rangescale if rangescale is not None else (25.0 if cam == "pn" else 10.0)
    if sas_version >= (20, 0, 0):
        params = [("eventfile", str(eventfile)), ("method", method), ("withsmoothing", "yes"),
                  ("smooth", "51"), ("withbinning", "yes"), ("binsize", "60"), ("ratio", "1.2"),
                  ("withlongnames", "yes"), ("elow", str(elow)), ("ehigh", str(ehigh)),
                  ("rangescale", f"{rs:g}"), ("allowsigma", f"{allowsigma:g}"),
                  ("keepinterfiles", "no")]
        if cam == "pn":
            params[1:1] = [("withoot", "yes" if ootfile else "no"), ("ootfile", str(ootfile or "dataset"))]
        gti = f"{cam}{exp_id}-gti-{elow}-{ehigh}.fits"
    else:
        params = [("eventset", str(eventfile)), ("method", "ratio"), ("withsmoothing", "yes"),
                  ("smooth", "51"), ("withbinning", "yes"), ("binsize", "60"), ("ratio", "1.2")]
        gti = f"{cam}-gti.fits"
    return SasTask("espfilt", params, [gti], {"SAS_CCF": str(ccf)})


def evselect_rate(table: Path, cam: str, rateset: str = "rate.fits", binsize: float = 100.0,
                  expression: str | None = None) -> SasTask:
    """High-energy single-event light curve for the fixed-threshold method."""
    from .instrument import camera
    expr = expression or camera(cam).flare_expression
    return SasTask("evselect", [("table", str(table)), ("withrateset", "yes"), ("rateset", rateset),
                                ("maketimecolumn", "yes"), ("timecolumn", "TIME"),
                                ("timebinsize", f"{binsize:g}"), ("makeratecolumn", "yes"),
                                ("expression", expr)], [rateset])


def tabgtigen(rateset: str, threshold: float, gtiset: str = "gti.fits") -> SasTask:
    return SasTask("tabgtigen", [("table", rateset), ("expression", f"RATE<={threshold:g}"),
                                 ("gtiset", gtiset)], [gtiset])


def evselect_clean(table: Path, gtiset: Path, expression: str, filteredset: str = "clean.fits") -> SasTask:
    """Cleaned list: standard filter AND the flare GTI, exposure keywords updated."""
    expr = f"{expression} && GTI({gtiset},TIME)"
    return SasTask("evselect", [("table", str(table)), ("withfilteredset", "yes"),
                                ("filteredset", filteredset), ("destruct", "yes"),
                                ("keepfilteroutput", "yes"), ("filtertype", "expression"),
                                ("expression", expr), ("updateexposure", "yes"),
                                ("filterexposure", "yes")], [filteredset])


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
    """Run one SAS task in a private temp dir; move its outputs to ``dest_dir``.

    Raises SasTaskError with one line (task, reason, log file) when the task times
    out, exits non-zero, prints a SAS error line or leaves an expected output missing.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_dir) / f"sas_{task.task}.log"
    with tempfile.TemporaryDirectory(prefix=f"xmmext_{task.task}_", dir=dest_dir) as tmp:
        run_dir = Path(tmp)
        res = runner.run(task.argv, cwd=run_dir, env=_task_env(run_dir, task.env), timeout=timeout,
                         log=log_path)
        if res.timed_out:
            raise SasTaskError(f"SAS task {task.task} timed out after {timeout:g} s and was killed", log_path)
        if res.returncode is None:
            raise DependencyError(f"SAS task {task.task} not found on PATH (is SAS initialised?)", log_path)
        err = ERROR_LINE.search(res.stdout + "\n" + res.stderr)
        if err:
            line = (res.stdout + "\n" + res.stderr)[err.start():].splitlines()[0].strip()
            raise SasTaskError(f"SAS task {task.task} reported: {line}", log_path)
        if res.returncode != 0:
            raise SasTaskError(f"SAS task {task.task} exited with status {res.returncode}", log_path)
        produced: list[Path] = []
        for pattern in task.outputs:
            hits = sorted(run_dir.glob(pattern))
            if not hits:
                raise SasTaskError(f"SAS task {task.task} did not produce {pattern}", log_path)
            for h in hits:
                final = dest_dir / h.name
                os.replace(h, final)
                produced.append(final)
        return produced


def sas_version() -> tuple[int, int, int]:
    exe = shutil.which("sasversion")
    if not exe:
        raise DependencyError("sasversion not on PATH: SAS is not initialised")
    res = runner.run([exe], timeout=60)
    return parse_sas_version(res.stdout + res.stderr)


# --- step 1 with SAS ---------------------------------------------------------------------
def run_sas_filtering(paths: ObsPaths, opts, timeout: float = 7200.0, force: bool = False) -> dict:
    """cifbuild, odfingest, emchain/epchain (OOT first), espfilt or evselect+tabgtigen,
    then evselect for the cleaned lists; filtering.json as for the native backend."""
    version = sas_version()
    work = paths.results / "sas"
    logs = paths.logs
    if not paths.odf.is_dir():
        raise DataError("no ODF folder for the SAS backend", paths.odf)
    ccf = work / "ccf.cif"
    if force or not ccf.exists():
        run_task(cifbuild(paths.odf), work, logs, timeout)
    sums = sorted(work.glob("*SUM.SAS"))
    if force or not sums:
        sums = run_task(odfingest(paths.odf, ccf), work, logs, timeout)
    summary = {}
    for cam in opts.cameras:
        try:
            summary[cam] = _sas_camera(cam, paths, opts, version, work, ccf, sums[0], logs, timeout, force)
        except SasTaskError as exc:
            log.warning("%s: %s", cam, exc.one_line())
            summary[cam] = {"status": "failed", "reason": exc.message, "log": exc.path}
    write_json(paths.events / "filtering.json", summary)
    if not any(s.get("status") == "ok" for s in summary.values()):
        raise DataError("no usable camera after SAS filtering; see results/<OBSID>/logs/",
                        paths.events / "filtering.json")
    return summary


def _sas_camera(cam, paths, opts, version, work, ccf, sum_sas, logs, timeout, force) -> dict:
    code = PPS_CODE[cam]
    evts = sorted(work.glob(f"P*{code}*{'PI' if cam == 'pn' else 'MI'}EVLI0000.FIT"))
    if force or not evts:
        if cam == "pn":
            run_task(epchain(sum_sas, ccf, out_of_time=True), work, logs, timeout)   # OOT run first
            evts = [p for p in run_task(epchain(sum_sas, ccf), work, logs, timeout) if "PIEVLI" in p.name]
        else:
            evts = [p for p in run_task(emchain(sum_sas, ccf), work, logs, timeout) if code in p.name]
    if not evts:
        raise SasTaskError(f"no {cam} event list from the SAS chain")
    evt = evts[0]
    exp_id = re.search(r"[SU]\d{3}", evt.name).group(0)
    oot = next(iter(sorted(work.glob("P*PN*OOEVLI0000.FIT"))), None) if cam == "pn" else None
    if opts.method == "fixed":
        rate = run_task(evselect_rate(evt, cam, f"{cam}_rate.fits", opts.binsize), work, logs, timeout)[0]
        gti = run_task(tabgtigen(rate.name, opts.threshold(cam), f"{cam}_gti.fits"), work, logs, timeout)[0]
    else:
        method = opts.method if version >= (20, 0, 0) else "ratio"
        task = espfilt(evt, cam, exp_id, version, ccf, method=method, allowsigma=opts.sigma, ootfile=oot)
        gti = run_task(task, work, logs, timeout)[0]
    gti_final = paths.events / f"{cam}_gti.fits"
    paths.events.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gti, gti_final)
    clean = run_task(evselect_clean(evt, gti_final, opts.expression(cam), f"{cam}_clean_evt.fits"),
                     paths.events, logs, timeout)[0]
    with fits.open(evt) as h_in, fits.open(clean) as h_out, fits.open(gti_final) as hg:
        g = G.normalise([[s, e] for s, e in zip(hg[1].data["START"], hg[1].data["STOP"])])
        before = float(h_in["EVENTS"].header.get("EXPOSURE", h_in["EVENTS"].header["TSTOP"] - h_in["EVENTS"].header["TSTART"]))
        after = float(h_out["EVENTS"].header.get("EXPOSURE", G.total(g)))
        rec = {"status": "ok", "backend": "sas", "sas_version": ".".join(map(str, version)),
               "input": str(evt), "method": opts.method, "threshold": opts.threshold(cam) if opts.method == "fixed" else None,
               "expression": opts.expression(cam), "exposure_before_s": before, "exposure_after_s": after,
               "fraction_rejected": 1 - after / before if before else None,
               "events_before": len(h_in["EVENTS"].data), "events_after": len(h_out["EVENTS"].data),
               "gti": g.tolist()}
    if version >= (22, 0, 0):
        rec["note"] = "SAS >= 22 espfilt does not apply FLAG; FLAG==0 applied in evselect"
    return rec


def describe(task: SasTask) -> str:
    """The command as a user would type it (for logs and reports; never executed)."""
    return " ".join([task.task] + [f"{k}={_q(v)}" for k, v in task.params])


def _q(v: str) -> str:
    return f"'{v}'" if re.search(r"[\s&|()<>!=#;]", v) else v
