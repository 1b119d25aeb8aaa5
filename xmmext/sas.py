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

import numpy as np
from astropy.io import fits

from . import gti as G
from . import runner
from .errors import DataError, DependencyError, UsageError
from .events import choose_exposure
from .fileio import write_json
from .layout import ObsPaths

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


# --- command builders (pure) ------------------------------------------------------------
def cifbuild(odf_dir: Path) -> SasTask:
    return SasTask("cifbuild", [("withccfpath", "no"), ("analysisdate", "now"),
                                ("category", "XMMCCF"), ("calindexset", "ccf.cif"), ("fullpath", "yes")],
                   ["ccf.cif"], {"SAS_ODF": str(odf_dir)})


def odfingest(odf_dir: Path, ccf: Path) -> SasTask:
    """odfingest documentation: odfdir is read only with withodfdir=yes (default no: SAS_ODF)."""
    return SasTask("odfingest", [("odfdir", str(odf_dir)), ("withodfdir", "yes"), ("outdir", ".")], ["*SUM.SAS"],
                   {"SAS_ODF": str(odf_dir), "SAS_CCF": str(ccf)})


def emchain(sum_sas: Path, ccf: Path) -> SasTask:
    return SasTask("emchain", [], ["P*M[12]*MIEVLI0000.FIT"], {"SAS_ODF": str(sum_sas), "SAS_CCF": str(ccf)})


def epchain(sum_sas: Path, ccf: Path, out_of_time: bool = False, sas_version: tuple = (0, 0, 0),
            keep_raw: bool = False) -> SasTask:
    """epchain over every imaging exposure (epchain documentation: by default only the first
    is processed; ``odfaccess=all`` with ``datamode=IMAGING`` processes all of them). On SAS
    21.0.0 radmonfix is switched off (issue 13: a SAS 21.0.0 watch-out that DAXA follows)."""
    params = [("datamode", "IMAGING"), ("odfaccess", "all"), ("withoutoftime", "yes" if out_of_time else "no")]
    if keep_raw:          # the out-of-time run keeps its raw files for the normal run (same folder)
        params.append(("keepintermediate", "raw"))
    if tuple(sas_version) == (21, 0, 0):
        params.append(("runradmonfix", "N"))
    out = ["P*PN*OOEVLI0000.FIT"] if out_of_time else ["P*PN*PIEVLI0000.FIT"]
    return SasTask("epchain", params, out, {"SAS_ODF": str(sum_sas), "SAS_CCF": str(ccf)})


# espfilt light-curve band per method (ESAS cookbook, espfilt calling parameters: "elow ...
# for the histogram method this should be 2500; for the ratio method it should be 8000",
# ehigh 8500 / 12000)
ESPFILT_BAND = {"histogram": (2500, 8500), "ratio": (8000, 12000)}


def espfilt(eventfile: Path, cam: str, exp_id: str, sas_version: tuple, ccf: Path, method: str = "histogram",
            elow: int | None = None, ehigh: int | None = None, rangescale: float | None = None,
            allowsigma: float = 3.0, ootfile: Path | None = None) -> SasTask:
    """espfilt with the parameter names of the SAS version in use; the energy band is the
    one the method needs unless given."""
    elow = ESPFILT_BAND[method][0] if elow is None else elow
    ehigh = ESPFILT_BAND[method][1] if ehigh is None else ehigh
    rs = rangescale if rangescale is not None else (25.0 if cam == "pn" else 10.0)
    if sas_version < (20, 0, 0):
        # issue 13, item 3: older espfilt names its outputs P<obsid><M1|M2|PN><exp>-gti.FIT and
        # takes other parameters; not checked against a real SAS, so not guessed at
        raise DependencyError(f"SAS {'.'.join(map(str, sas_version))}: the SAS backend's flare filtering "
                              "needs SAS >= 20 (espfilt); use --backend native or a newer SAS")
    params = [("eventfile", str(eventfile)), ("method", method), ("withsmoothing", "yes"),
              ("smooth", "51"), ("withbinning", "yes"), ("binsize", "60"), ("ratio", "1.2"),
              ("elow", str(elow)), ("ehigh", str(ehigh)),
              ("rangescale", f"{rs:g}"), ("allowsigma", f"{allowsigma:g}"), ("keepinterfiles", "no")]
    if sas_version < (21, 0, 0):
        # SAS 20 only: withlongnames=yes gives <inst><exp>-gti-<elow>-<ehigh>.fits; SAS >= 21
        # has no such parameter and writes <inst><exp>-gti.fits (issue 13, item 2)
        params.insert(7, ("withlongnames", "yes"))
    if cam == "pn":
        params[1:1] = [("withoot", "yes" if ootfile else "no"), ("ootfile", str(ootfile or "dataset"))]
    gti = f"{cam}{exp_id}-gti-{elow}-{ehigh}.fits" if sas_version < (21, 0, 0) else f"{cam}{exp_id}-gti.fits"
    return SasTask("espfilt", params, [gti], {"SAS_CCF": str(ccf)})


def emanom(eventfile: Path) -> SasTask:
    """MOS anomalous-state check (emanom documentation: the 2.5-5.0/0.4-0.8 keV corner hardness
    ratio per CCD; with writekeys=yes the flags ANOMFLn = G/I/B/U/O go into the event list's
    primary header; keepcorner=no, as recommended)."""
    return SasTask("emanom", [("eventfile", str(eventfile)), ("writekeys", "yes"), ("keepcorner", "no")], [])


def anomalous_ccds(eventfile: Path) -> dict[int, str]:
    """{CCD: emanom flag} from the ANOMFLn keywords of an event list (empty without them)."""
    h = fits.getheader(eventfile, 0)
    return {int(k[6:]): str(h[k]).strip() for k in h if re.match(r"^ANOMFL\d+$", k)}


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
    return run_tasks([task], dest_dir, log_dir, timeout)


def run_tasks(tasks: list[SasTask], dest_dir: Path, log_dir: Path, timeout: float = 7200.0) -> list[Path]:
    """Run tasks one after the other in ONE private temp dir (a later task may use what an
    earlier one left there, e.g. epchain's kept raw files); move all their outputs to
    ``dest_dir``. Each task is judged as by :func:`run_task`."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"xmmext_{tasks[0].task}_", dir=dest_dir) as tmp:
        run_dir = Path(tmp)
        produced: list[Path] = []
        for task in tasks:
            log_path = Path(log_dir) / f"sas_{task.task}.log"
            res = runner.run(task.argv, cwd=run_dir, env=_task_env(run_dir, task.env), timeout=timeout,
                             log=log_path)
            _judge(task, res, log_path)
            for pattern in task.outputs:
                hits = sorted(run_dir.glob(pattern))
                if not hits:
                    raise SasTaskError(f"SAS task {task.task} did not produce {pattern}", log_path)
                produced.extend(hits)
        finals = []
        for h in produced:
            final = dest_dir / h.name
            os.replace(h, final)
            finals.append(final)
        return finals


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
            # the out-of-time run first, keeping its raw files, then the normal run in the same
            # folder so that it does not redo them (issue 13)
            chain = [epchain(sum_sas, ccf, out_of_time=True, sas_version=version, keep_raw=True),
                     epchain(sum_sas, ccf, sas_version=version)]
            evts = [p for p in run_tasks(chain, work, logs, timeout) if "PIEVLI" in p.name]
        else:
            evts = [p for p in run_task(emchain(sum_sas, ccf), work, logs, timeout) if code in p.name]
    if not evts:
        raise SasTaskError(f"no {cam} event list from the SAS chain")
    evt, choice = choose_exposure(evts)      # one list per exposure from the chains: the longest, said so
    exp_id = re.search(r"[SU]\d{3}", evt.name).group(0)
    # the out-of-time list of the same exposure as the chosen one
    oot = next(iter(sorted(work.glob(f"P*PN{exp_id}OOEVLI0000.FIT"))), None) if cam == "pn" else None
    method = "histogram" if opts.method == "auto" else opts.method    # a fresh SAS list is not screened yet
    if method == "input":
        raise UsageError("--method input keeps the good time of an already-cleaned list; the SAS backend "
                         "makes new lists from the ODF: choose histogram, fixed or ratio")
    if method == "fixed":
        rate = run_task(evselect_rate(evt, cam, f"{cam}_rate.fits", opts.binsize), work, logs, timeout)[0]
        # an absolute path: the task runs in a private folder where a bare name does not exist
        gti = run_task(tabgtigen(str(rate), opts.threshold(cam), f"{cam}_gti.fits"), work, logs, timeout)[0]
    else:
        task = espfilt(evt, cam, exp_id, version, ccf, method=method, allowsigma=opts.sigma, ootfile=oot)
        gti = run_task(task, work, logs, timeout)[0]
    gti_final = paths.events / f"{cam}_gti.fits"
    paths.events.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gti, gti_final)
    expression, states = opts.expression(cam), {}
    if cam != "pn":                 # MOS CCDs in an anomalous state (B) cannot have their QPB modelled
        run_task(emanom(evt), work, logs, timeout)
        states = anomalous_ccds(evt)
        for n in sorted(c for c, f in states.items() if f == "B"):
            expression += f" && (CCDNR != {n})"
    clean = run_task(evselect_clean(evt, gti_final, expression, f"{cam}_clean_evt.fits"),
                     paths.events, logs, timeout)[0]
    with fits.open(evt) as h_in, fits.open(clean) as h_out, fits.open(gti_final) as hg:
        g = G.normalise([[s, e] for s, e in zip(hg[1].data["START"], hg[1].data["STOP"])])
        # live time, as the native path (issue 13): evselect updateexposure=yes writes LIVETIME
        hin, hout = h_in["EVENTS"].header, h_out["EVENTS"].header
        before = float(hin.get("LIVETIME", hin.get("EXPOSURE", hin["TSTOP"] - hin["TSTART"])))
        after = float(hout.get("LIVETIME", hout.get("EXPOSURE", G.total(g))))
        rec = {"status": "ok", "backend": "sas", "sas_version": ".".join(map(str, version)),
               "input": str(evt), "exposure_choice": choice,
               "exposure_kind": "live time (LIVETIME of the lists)", "method": method, "threshold": opts.threshold(cam) if method == "fixed" else None,
               "expression": expression, "exposure_before_s": before, "exposure_after_s": after,
               "anomalous_ccds": states, "excluded_ccds": sorted(c for c, f in states.items() if f == "B"),
               "fraction_rejected": 1 - after / before if before else None,
               "events_before": len(h_in["EVENTS"].data), "events_after": len(h_out["EVENTS"].data),
               "gti": g.tolist()}
    if version >= (22, 0, 0):
        rec["note"] = "SAS >= 22 espfilt does not apply FLAG; FLAG==0 applied in evselect"
    return rec


# --- step 3 with SAS ------------------------------------------------------------------------
def evselect_spectrum(table: Path, cam: str, expression: str, spectrumset: str) -> SasTask:
    """Spectrum with 5 eV channels over the camera's PI range (pn 0-20479, MOS 0-11999)."""
    chmax = 20479 if cam == "pn" else 11999
    return SasTask("evselect", [("table", str(table)), ("withspectrumset", "yes"), ("spectrumset", spectrumset),
                                ("energycolumn", "PI"), ("spectralbinsize", "5"), ("withspecranges", "yes"),
                                ("specchannelmin", "0"), ("specchannelmax", str(chmax)),
                                ("expression", expression)], [spectrumset])


def evselect_detmap(table: Path, expression: str, imageset: str = "detmap.fits") -> SasTask:
    """Detector-coordinate image of the source events: the weights of arfgen's extended ARF."""
    return SasTask("evselect", [("table", str(table)), ("withimageset", "yes"), ("imageset", imageset),
                                ("xcolumn", "DETX"), ("ycolumn", "DETY"), ("imagebinning", "binSize"),
                                ("ximagebinsize", "120"), ("yimagebinsize", "120"),
                                ("expression", expression)], [imageset])


def backscale(spectrumset: Path, badpixlocation: Path) -> SasTask:
    return SasTask("backscale", [("spectrumset", str(spectrumset)), ("badpixlocation", str(badpixlocation))], [])


def rmfgen(spectrumset: Path, rmfset: str, detmap: Path | None = None) -> SasTask:
    """RMF; for an extended source weighted by the detector map of its events (rmfgen
    documentation: ``detmaptype`` defaults to psf, i.e. the response at the region centre;
    ``dataset`` takes the DETX/DETY image named by ``detmaparray``)."""
    params = [("spectrumset", str(spectrumset)), ("rmfset", rmfset)]
    if detmap is not None:
        params += [("detmaptype", "dataset"), ("detmaparray", str(detmap))]
    return SasTask("rmfgen", params, [rmfset])


def arfgen_extended(spectrumset: Path, rmfset: Path, arfset: str, detmap: Path, badpixlocation: Path) -> SasTask:
    """arfgen for an extended source weighted by the detector map of its events."""
    return SasTask("arfgen", [("spectrumset", str(spectrumset)), ("arfset", arfset), ("withrmfset", "yes"),
                              ("rmfset", str(rmfset)), ("extendedsource", "yes"), ("detmaptype", "dataset"),
                              ("detmaparray", str(detmap)), ("badpixlocation", str(badpixlocation)),
                              ("setbackscale", "no")], [arfset])


def specgroup(spectrumset: Path, groupedset: str, backgndset: Path, rmfset: Path, arfset: Path,
              mincounts: int = 25) -> SasTask:
    """specgroup with the parameters of its documentation (no 'withbgdset' there: backgndset
    alone names the background)."""
    return SasTask("specgroup", [("spectrumset", str(spectrumset)), ("groupedset", groupedset),
                                 ("mincounts", str(mincounts)), ("oversample", "3"),
                                 ("backgndset", str(backgndset)), ("rmfset", str(rmfset)),
                                 ("arfset", str(arfset)), ("addfilenames", "yes")], [groupedset])


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


def sas_spectra_tasks(cam: str, events: Path, src_expr: str, bkg_expr: str, std_expr: str,
                      mincounts: int = 25) -> list[SasTask]:
    """The whole step-3 task list for one camera, in order (outputs land in one folder)."""
    src_sel = f"{std_expr} && {src_expr}"
    bkg_sel = f"{std_expr} && {bkg_expr}"
    src, bkg = f"{cam}_src.pha", f"{cam}_bkg.pha"
    rmf, arf, det = f"{cam}.rmf", f"{cam}.arf", f"{cam}_detmap.fits"
    return [evselect_spectrum(events, cam, src_sel, src), evselect_spectrum(events, cam, bkg_sel, bkg),
            backscale(Path(src), events), backscale(Path(bkg), events),
            evselect_detmap(events, src_sel, det), rmfgen(Path(src), rmf, Path(det)),
            arfgen_extended(Path(src), Path(rmf), arf, Path(det), events),
            specgroup(Path(src), f"{cam}_src_grp.pha", Path(bkg), Path(rmf), Path(arf), mincounts)]


def run_sas_spectra(paths: ObsPaths, cameras, mincounts: int = 25, timeout: float = 7200.0) -> dict:
    """Step 3 through SAS: run each camera's task list in results/<OBSID>/spectra/.

    Tasks that modify a spectrum in place (backscale) run on a copy in their private
    folder and the result replaces the file, so an interrupted run leaves no half file.
    """
    import json as _json
    from .shapes import read_ds9
    filt = _json.loads((paths.events / "filtering.json").read_text())
    env = observation_sas_env(paths)
    out = paths.spectra
    out.mkdir(parents=True, exist_ok=True)
    summary = {"backend": "sas", "cameras": {}}
    for cam in cameras:
        try:
            events = paths.clean_events(cam)
            if not events.exists():
                raise SasTaskError(f"{cam}: no cleaned events")
            src = read_ds9(paths.regions / "src.reg")
            bkg = read_ds9(paths.regions / "bkg.reg")
            for task in sas_spectra_tasks(cam, events, src.evselect_expression(), bkg.evselect_expression(),
                                          filt[cam]["expression"], mincounts):
                if task.task in CALIBRATED_TASKS:
                    task.env.update(env)
                _run_in_folder(task, out, paths.logs, timeout)
            summary["cameras"][cam] = {"status": "ok", "files": {k: str(out / f"{cam}{v}") for k, v in
                                       (("src", "_src.pha"), ("bkg", "_bkg.pha"), ("grp", "_src_grp.pha"),
                                        ("rmf", ".rmf"), ("arf", ".arf"))}}
        except SasTaskError as exc:
            log.warning("%s: %s", cam, exc.one_line())
            summary["cameras"][cam] = {"status": "failed", "reason": exc.message}
    write_json(out / "spectra.json", summary)
    if not any(s.get("status") == "ok" for s in summary["cameras"].values()):
        raise DataError("no camera gives a spectrum with SAS; see results/<OBSID>/logs/", out / "spectra.json")
    return summary


def _run_in_folder(task: SasTask, folder: Path, logs: Path, timeout: float) -> None:
    """Run a task whose file arguments are names in ``folder``: inputs are copied into the
    task's private folder (in-place tasks such as backscale then modify the copy), and
    what it writes or modifies is moved back atomically."""
    import tempfile as _tf
    folder = Path(folder)
    with _tf.TemporaryDirectory(prefix=f"xmmext_{task.task}_", dir=folder) as tmp:
        run_dir = Path(tmp)
        modified = []
        for _, v in task.params:
            src = folder / v
            # parameter values are file names or expressions; only short bare names can be files
            if v and "/" not in v and len(v) < 255 and src.is_file():
                shutil.copyfile(src, run_dir / v)
                modified.append(v)
        res = runner.run(task.argv, cwd=run_dir, env=_task_env(run_dir, task.env), timeout=timeout,
                         log=Path(logs) / f"sas_{task.task}.log")
        _judge(task, res, Path(logs) / f"sas_{task.task}.log")
        for name in set(task.outputs) | set(modified):
            p = run_dir / name
            if not p.exists():
                raise SasTaskError(f"SAS task {task.task} did not produce {name}", Path(logs) / f"sas_{task.task}.log")
            os.replace(p, folder / name)


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


# --- step 2 with SAS ------------------------------------------------------------------------
def evselect_image_range(x0: float, n: int, binsize: float) -> tuple[float, float]:
    """``ximagemin``/``ximagemax`` for which evselect bins an integer column into exactly the
    ``n`` pixels [x0 + k*bin, x0 + (k+1)*bin): evselect starts the first bin at
    ``ximagemin - 0.5`` and makes (ximagemax - ximagemin)/bin + 1 of them. Read off a real
    SAS 13.5 image (../shared/data/xmm_a907_0201903501, XPROC0: ximagemin=3649
    ximagemax=48106 ximagebinsize=87 -> 512 pixels, LTV1 -41.437: pixel 1 spans
    3648.5-3735.5)."""
    lo = x0 + 0.5
    return lo, lo + (n - 1) * binsize


def evselect_image(table: Path, cam: str, band_ev: tuple[int, int], grid, imageset: str, std_expr: str) -> SasTask:
    """Sky image on exactly the native image grid (4" pixels), so both paths share regions;
    PI in [lo:hi] with both ends included, as the native images and the SAS images of XGA."""
    x_lo, x_hi = evselect_image_range(grid.x0, grid.n, grid.binsize)
    y_lo, y_hi = evselect_image_range(grid.y0, grid.n, grid.binsize)
    expr = f"{std_expr} && (PI in [{band_ev[0]}:{band_ev[1]}])"
    return SasTask("evselect", [("table", str(table)), ("withimageset", "yes"), ("imageset", imageset),
                                ("xcolumn", "X"), ("ycolumn", "Y"), ("imagebinning", "binSize"),
                                ("ximagebinsize", f"{grid.binsize:g}"), ("yimagebinsize", f"{grid.binsize:g}"),
                                ("withxranges", "yes"), ("ximagemin", f"{x_lo:g}"), ("ximagemax", f"{x_hi:g}"),
                                ("withyranges", "yes"), ("yimagemin", f"{y_lo:g}"), ("yimagemax", f"{y_hi:g}"),
                                ("expression", expr)], [imageset])


def eexpmap(imageset: str, eventset: Path, attitudeset: Path, band_ev: tuple[int, int], expimageset: str) -> SasTask:
    return SasTask("eexpmap", [("imageset", imageset), ("eventset", str(eventset)), ("attitudeset", str(attitudeset)),
                               ("expimageset", expimageset), ("pimin", str(band_ev[0])), ("pimax", str(band_ev[1])),
                               ("withdetcoords", "no")], [expimageset])


def edetect_chain(imagesets: list[str], eventsets: list[Path], attitudeset: Path, bands_ev: list[tuple[int, int]],
                  likemin: float = 10.0, mllistset: str = "emllist.fits") -> SasTask:
    """Standard EPIC source detection on the given images; ``bands_ev`` holds the band of
    each image, in the order of ``imagesets`` (edetect_chain documentation: it checks that
    the numbers of pimin/pimax values match the number of images and stops otherwise;
    ecf gets one value per image too). Source extent is fitted so that extended emission
    is told from point sources (emldetect's EXT/EXT_ML columns)."""
    if len(bands_ev) != len(imagesets):
        raise ValueError("edetect_chain: one band per image")
    pimin = " ".join(str(b[0]) for b in bands_ev)
    pimax = " ".join(str(b[1]) for b in bands_ev)
    ecf = " ".join("1.0" for _ in imagesets)
    return SasTask("edetect_chain", [("imagesets", " ".join(imagesets)),
                                     ("eventsets", " ".join(str(e) for e in eventsets)),
                                     ("attitudeset", str(attitudeset)), ("pimin", pimin), ("pimax", pimax),
                                     ("likemin", f"{likemin:g}"), ("witheexpmap", "yes"), ("ecf", ecf),
                                     ("eboxl_list", "eboxlist_l.fits"), ("eboxm_list", "eboxlist_m.fits"),
                                     ("eml_fitextent", "yes"), ("esp_withootset", "no"), ("eml_list", mllistset)],
                   [mllistset])


EXT_ML_MIN = 10.0       # emldetect's default dmlextmin: extent likelihood needed to call a source extended


def read_emllist(path: Path, likemin: float = 10.0) -> list[dict]:
    """Point sources from an emldetect list: summary rows (ID_INST == 0) with DET_ML >=
    ``likemin`` that are not extended (the emldetect output table: EXT = extent in image
    pixels, EXT_ML = likelihood of extent; extended = EXT > 0 with EXT_ML >= dmlextmin)."""
    with fits.open(path) as h:
        d = h[1].data
        cols = d.columns.names
        rows = d[d["ID_INST"] == 0] if "ID_INST" in cols else d
        out = []
        for r in rows:
            extended = "EXT" in cols and float(r["EXT"]) > 0 and ("EXT_ML" not in cols or float(r["EXT_ML"]) >= EXT_ML_MIN)
            if float(r["DET_ML"]) < likemin or extended:
                continue                      # extended detections are the cluster, not point sources
            out.append({"ra": float(r["RA"]), "dec": float(r["DEC"]), "counts": float(r["SCTS"]) if "SCTS" in cols else 0.0,
                        "det_ml": float(r["DET_ML"])})
        return out


def atthkgen(atthkset: str = "atthk.fits") -> SasTask:
    return SasTask("atthkgen", [("atthkset", atthkset), ("timestep", "1")], [atthkset])


def run_sas_images(paths: ObsPaths, cameras: list[str], grid) -> tuple[dict, list[dict]]:
    """Images (evselect on the native grid), exposure maps (eexpmap) and the point-source
    list (edetect_chain) for step 2; returns ({cam: {band: (img, expmap)}}, sources)."""
    import json as _json
    from .images import BANDS_KEV, DETECT_BAND
    filt = _json.loads((paths.events / "filtering.json").read_text())
    work = paths.regions / "sas"
    work.mkdir(parents=True, exist_ok=True)
    env_extra = observation_sas_env(paths)
    att = work / "atthk.fits"
    if not att.exists():
        t = atthkgen()
        t.env.update(env_extra)
        _run_in_folder(t, work, paths.logs, 3600)
    maps, det_imgs, det_events = {}, [], []
    for cam in cameras:
        events = paths.clean_events(cam)
        maps[cam] = {}
        for band, (lo, hi) in BANDS_KEV.items():
            b_ev = (int(lo * 1000), int(hi * 1000))
            img, exp = f"{cam}_img_{band}.fits", f"{cam}_exp_{band}.fits"
            _run_in_folder(evselect_image(events, cam, b_ev, grid, img, filt[cam]["expression"]), work, paths.logs, 3600)
            t = eexpmap(img, events, att, b_ev, exp)
            t.env.update(env_extra)
            _run_in_folder(t, work, paths.logs, 3600)
            maps[cam][band] = (np.asarray(fits.getdata(work / img), float), np.asarray(fits.getdata(work / exp), float))
            for name, m in zip((img, exp), maps[cam][band]):
                if m.shape != (grid.n, grid.n):
                    raise SasTaskError(f"{name} is {m.shape[1]}x{m.shape[0]} pixels, expected the "
                                       f"{grid.n}x{grid.n} grid of the native images", work / name)
            if band == DETECT_BAND:
                det_imgs.append(str(work / img))          # a list argument: absolute paths
                det_events.append(events)
    lo, hi = BANDS_KEV[DETECT_BAND]
    t = edetect_chain(det_imgs, det_events, att, [(int(lo * 1000), int(hi * 1000))] * len(det_imgs))
    t.env.update(env_extra)
    _run_in_folder(t, work, paths.logs, 7200)
    return maps, read_emllist(work / "emllist.fits")
