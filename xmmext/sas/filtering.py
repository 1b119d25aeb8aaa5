"""Step 1 with SAS: cifbuild, odfingest, emchain/epchain, espfilt or evselect+tabgtigen,
emanom, and the final evselect (builders are pure; :func:`run_sas_filtering` runs them)."""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from astropy.io import fits

import xmmext.events.gti as G
from xmmext.core.errors import DataError, DependencyError, UsageError
from xmmext.events.reader import choose_exposure
from xmmext.core.paths import ObsPaths
from xmmext.sas.tasks import PPS_CODE, SasTask, SasTaskError, run_task, run_tasks, sas_version

__all__ = ["cifbuild", "odfingest", "emchain", "epchain", "ESPFILT_BAND", "espfilt", "emanom", "anomalous_ccds",
           "evselect_rate", "tabgtigen", "evselect_clean", "run_sas_filtering"]

log = logging.getLogger("xmmext.sas")


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
    from xmmext.instrument import camera
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


# --- step 1 with SAS ---------------------------------------------------------------------
def run_sas_filtering(paths: ObsPaths, opts, timeout: float = 7200.0, force: bool = False) -> tuple[dict, list]:
    """cifbuild, odfingest, emchain/epchain (OOT first), espfilt or evselect+tabgtigen,
    then evselect for the cleaned lists; returns the filtering.json content (as for the
    native backend) and the files written in results/<OBSID>/events/.

    The products of the ODF processing (ccf.cif, *SUM.SAS, the chains' event lists in
    results/<OBSID>/sas/) are reused when present and redone with ``force``: they depend on
    the ODF only, and the chains take tens of minutes."""
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
    summary, written = {}, []
    for cam in opts.cameras:
        try:
            summary[cam] = _sas_camera(cam, paths, opts, version, work, ccf, sums[0], logs, timeout, force)
            written += [paths.events / f"{cam}_gti.fits", paths.clean_events(cam)]
        except SasTaskError as exc:
            log.warning("%s: %s", cam, exc.one_line())
            summary[cam] = {"status": "failed", "reason": exc.message, "log": exc.path}
    return summary, written


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


