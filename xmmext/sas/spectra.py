"""Step 3 with SAS: evselect spectra, backscale, rmfgen, arfgen (extended source),
specgroup; :func:`run_sas_spectra` runs one camera's list in results/<OBSID>/spectra/."""
from __future__ import annotations

import logging
from pathlib import Path

from xmmext.core.fileio import read_json
from xmmext.core.paths import ObsPaths
from xmmext.sas.tasks import CALIBRATED_TASKS, SasTask, SasTaskError, observation_sas_env, run_in_folder

__all__ = ["evselect_spectrum", "evselect_detmap", "backscale", "rmfgen", "arfgen_extended", "specgroup",
           "sas_spectra_tasks", "run_sas_spectra"]

log = logging.getLogger("xmmext.sas")


# --- command builders ------------------------------------------------------------------------
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
              mincounts: int = 25, oversample: float | None = 3) -> SasTask:
    """specgroup with the parameters of its documentation (no 'withbgdset' there: backgndset
    alone names the background); oversample is left out (the task's default) when None."""
    width = [("oversample", f"{oversample:g}")] if oversample else []
    return SasTask("specgroup", [("spectrumset", str(spectrumset)), ("groupedset", groupedset),
                                 ("mincounts", str(mincounts))] + width +
                   [("backgndset", str(backgndset)), ("rmfset", str(rmfset)),
                    ("arfset", str(arfset)), ("addfilenames", "yes")], [groupedset])


def sas_spectra_tasks(cam: str, events: Path, src_expr: str, bkg_expr: str, std_expr: str,
                      mincounts: int = 25, oversample: float | None = 3) -> list[SasTask]:
    """The whole step-3 task list for one camera, in order (outputs land in one folder)."""
    src_sel = f"{std_expr} && {src_expr}"
    bkg_sel = f"{std_expr} && {bkg_expr}"
    src, bkg = f"{cam}_src.pha", f"{cam}_bkg.pha"
    rmf, arf, det = f"{cam}.rmf", f"{cam}.arf", f"{cam}_detmap.fits"
    return [evselect_spectrum(events, cam, src_sel, src), evselect_spectrum(events, cam, bkg_sel, bkg),
            backscale(Path(src), events), backscale(Path(bkg), events),
            evselect_detmap(events, src_sel, det), rmfgen(Path(src), rmf, Path(det)),
            arfgen_extended(Path(src), Path(rmf), arf, Path(det), events),
            specgroup(Path(src), f"{cam}_src_grp.pha", Path(bkg), Path(rmf), Path(arf), mincounts, oversample)]


def run_sas_spectra(paths: ObsPaths, cameras, mincounts: int = 25, timeout: float = 7200.0,
                    oversample: float | None = 3) -> tuple[dict, list]:
    """Step 3 through SAS: run each camera's task list in results/<OBSID>/spectra/; returns
    the spectra.json content and the files written.

    Tasks that modify a spectrum in place (backscale) run on a copy in their private
    folder and the result replaces the file, so an interrupted run leaves no half file.
    """
    from xmmext.sky.extraction_region import read_ds9
    filt = read_json(paths.events / "filtering.json", "filtering.json of step 1")
    env = observation_sas_env(paths)
    out = paths.spectra
    out.mkdir(parents=True, exist_ok=True)
    summary, written = {"backend": "sas", "cameras": {}}, []
    for cam in cameras:
        try:
            events = paths.clean_events(cam)
            if not events.exists():
                raise SasTaskError(f"{cam}: no cleaned events")
            src = read_ds9(paths.regions / "src.reg")
            bkg = read_ds9(paths.regions / "bkg.reg")
            for task in sas_spectra_tasks(cam, events, src.evselect_expression(), bkg.evselect_expression(),
                                          filt[cam]["expression"], mincounts, oversample):
                if task.task in CALIBRATED_TASKS:
                    task.env.update(env)
                run_in_folder(task, out, paths.logs, timeout)
            summary["cameras"][cam] = {"status": "ok", "files": {k: str(out / f"{cam}{v}") for k, v in
                                       (("src", "_src.pha"), ("bkg", "_bkg.pha"), ("grp", "_src_grp.pha"),
                                        ("rmf", ".rmf"), ("arf", ".arf"))}}
            written += [Path(f) for f in summary["cameras"][cam]["files"].values()]
        except SasTaskError as exc:
            log.warning("%s: %s", cam, exc.one_line())
            summary["cameras"][cam] = {"status": "failed", "reason": exc.message}
    return summary, written


