"""Step 1's work (native backend): flare-cleaned event lists, GTIs and light curves (the step: :mod:`xmmext.steps.filtering`).

For each camera (each of its exposures: :mod:`xmmext.events.exposures`): the flare GTI
(:mod:`xmmext.events.flares`) and the cleaned list = standard filter AND (per-CCD GTI
intersected with the flare GTI), with the exposure keywords and STDGTInn extensions
updated as evselect's updateexposure does; then the residual soft protons
(:mod:`xmmext.events.soft_protons`).

Outputs (results/<OBSID>/events/): <cam>_clean_evt.fits, <cam>_gti.fits,
<cam>_lc.fits, <cam>_lc.png (filtering.json: :mod:`xmmext.steps.filtering`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from astropy.io import fits

import xmmext.events.gti as G
from xmmext.events.gti import gti_hdu
import xmmext.events.soft_protons as SP
import xmmext.instrument as ins
from xmmext.core.errors import DataError, UsageError
from xmmext.events.reader import EventList, exposures_to_use, find_event_files, is_prefiltered, read_events
from xmmext.events.flares import REFERENCE_CCD, flare_gti, light_curve_hdulist, plot_light_curve, reference_gti
from xmmext.events.selection import compile_expression
from xmmext.core.fileio import write_fits
from xmmext.core.paths import ObsPaths
from xmmext.events.exposures import merge_cleaned_lists

__all__ = ["clean_events", "bad_pixel_hdus", "write_selected_rows", "dead_time_fraction", "needed_columns",
           "outputs_for", "residual_soft_protons", "filter_observation"]

log = logging.getLogger("xmmext.events.cleaning")



def clean_events(ev: EventList, flare: np.ndarray, expression: str, dest) -> dict:
    """Apply the filter expression and the per-CCD GTIs intersected with ``flare``;
    write the cleaned list to ``dest`` (atomically) and return event counts.

    ``ev`` needs only the columns the selection uses (plus TIME and CCDNR); the output
    rows are copied whole from the input table, so every column, its format and
    scaling are carried over untouched.
    """
    cols = ev.columns
    keep = compile_expression(expression).evaluate(cols)
    ccd_gti = {c: G.intersect(g, flare) for c, g in ev.gtis.items()} if ev.gtis else \
        {int(c): G.intersect([[ev.tstart, ev.tstop]], flare) for c in np.unique(cols["CCDNR"])}
    keep &= _in_ccd_gtis(cols["TIME"], cols["CCDNR"], ccd_gti)
    header = _cleaned_header(ev, keep, ccd_gti, flare, expression)
    gti_hdus = [gti_hdu(g, f"STDGTI{c:02d}", ccd=c) for c, g in sorted(ccd_gti.items())]
    write_selected_rows(ev.path, keep, ev.primary, header, gti_hdus + bad_pixel_hdus(ev.path), dest)
    return {"events_before": int(ev.n), "events_after": int(keep.sum())}


def bad_pixel_hdus(path) -> list:
    """Copies of the input's BADPIXnn tables (the footprint of later steps needs them)."""
    from xmmext.events.reader import open_fits
    with open_fits(path) as hdul:
        return [fits.BinTableHDU(data=h.data.copy(), header=h.header.copy(), name=h.name)
                for h in hdul[1:] if (h.name or "").startswith("BADPIX") and h.data is not None]


def write_selected_rows(src, keep: np.ndarray, primary: fits.Header, header: fits.Header,
                        extra_hdus: list, dest) -> None:
    """Write the rows of the EVENTS table of ``src`` where ``keep`` is true.

    The binary-table bytes of the selected rows are copied as they are (FITS rows are
    fixed-width records), which is several times faster than rebuilding the table in
    astropy; the small GTI extensions are appended with astropy.
    """
    from xmmext.core.fileio import atomic_path
    with fits.open(src, memmap=True) as hdul:
        ev = hdul["EVENTS"]
        if int(ev.header.get("PCOUNT", 0)) != 0:      # variable-length columns: let astropy do it
            raw_hdu = fits.BinTableHDU(data=ev.data[keep], header=header, name="EVENTS")
            with atomic_path(dest) as tmp:
                fits.HDUList([fits.PrimaryHDU(header=primary.copy()), raw_hdu] + extra_hdus).writeto(tmp)
            return
        raw = np.asarray(ev.data).view(np.ndarray)
        rows = raw.view(f"V{raw.dtype.itemsize}").take(np.flatnonzero(keep))
    hdr = header.copy()
    hdr["NAXIS2"] = len(rows)
    for k in ("CHECKSUM", "DATASUM"):
        hdr.remove(k, ignore_missing=True)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            fits.PrimaryHDU(header=primary.copy()).writeto(fh)
            fh.write(hdr.tostring().encode("ascii"))
            fh.write(memoryview(rows))          # no intermediate copy
            fh.write(b"\0" * (-rows.nbytes % 2880))
        for hdu in extra_hdus:
            fits.append(tmp, hdu.data, hdu.header)


def _in_ccd_gtis(time, ccdnr, ccd_gti: dict) -> np.ndarray:
    """Events inside the GTI of their own CCD; one pass per distinct GTI set (usually one)."""
    groups: dict[bytes, list[int]] = {}
    for c, g in ccd_gti.items():
        groups.setdefault(np.ascontiguousarray(g).tobytes(), []).append(c)
    if len(groups) == 1:
        (ccds,) = groups.values()
        inside = G.in_gti(time, ccd_gti[ccds[0]])
        known = np.isin(ccdnr, ccds) if set(np.unique(ccdnr)) - set(ccds) else True
        return inside & known
    out = np.zeros(len(time), bool)
    for ccds in groups.values():
        on = np.isin(ccdnr, ccds)
        out[on] = G.in_gti(time[on], ccd_gti[ccds[0]])
    return out


def dead_time_fraction(header: fits.Header, ccd: int) -> float:
    """Live/on time of a CCD from the input header (LIVETInn/ONTIMEnn; 1 when absent)."""
    on, live = header.get(f"ONTIME{ccd:02d}"), header.get(f"LIVETI{ccd:02d}")
    try:
        on, live = float(on), float(live)
    except (TypeError, ValueError):
        return 1.0
    return live / on if on > 0 and 0 < live <= on else 1.0


def _cleaned_header(ev, keep, ccd_gti, flare, expression) -> fits.Header:
    """EVENTS header with exposure keywords updated as evselect's updateexposure does:
    ONTIMEnn = good time of the CCD, LIVETInn = that x the input's live fraction."""
    h = ev.header.copy()
    ref = REFERENCE_CCD[ev.camera]
    live = {}
    for c, g in ccd_gti.items():
        t = G.total(g)
        live[c] = t * dead_time_fraction(ev.header, c)
        h[f"ONTIME{c:02d}"] = (t, "[s] sum of GTIs for this CCD")
        h[f"LIVETI{c:02d}"] = (live[c], "[s] live time for this CCD")
        h[f"EXPOSU{c:02d}"] = (live[c], "[s] exposure for this CCD")
    ref = ref if ref in ccd_gti else (max(live, key=live.get) if live else ref)
    ontime = G.total(ccd_gti.get(ref, flare))
    livetime = live.get(ref, ontime)
    h["ONTIME"] = (ontime, "[s] GTI sum, reference CCD, after filtering")
    h["LIVETIME"] = (livetime, "[s] live time, reference CCD")
    h["EXPOSURE"] = (livetime, "[s] live time, reference CCD")
    h.remove("SLCTEXPR", ignore_missing=True)      # a long value keeps no comment (no truncation warning)
    h["SLCTEXPR"] = expression
    h["HISTORY"] = f"xmmext.events.cleaning: kept {int(keep.sum())} of {ev.n} events; expression {expression}"
    return h


# --- the step --------------------------------------------------------------------------
def needed_columns(cam: str, opts) -> list[str]:
    """Columns the light curves and the selection read (the rest is copied untouched)."""
    need = {"TIME", "CCDNR", "FLAG", "PI", "PATTERN"}
    need |= compile_expression(opts.expression(cam)).columns
    need |= compile_expression(ins.camera(cam).flare_expression).columns
    return sorted(need)


def outputs_for(paths: ObsPaths, prefix: str) -> list:
    """A camera's (or one exposure's, ``<cam>_e<k>``) cleaned list, GTI, light curve and plot."""
    e = paths.events
    return [e / f"{prefix}_clean_evt.fits", e / f"{prefix}_gti.fits", e / f"{prefix}_lc.fits", e / f"{prefix}_lc.png"]


def residual_soft_protons(paths: ObsPaths, cam: str, clean, expression: str, gti, exposure_s: float) -> dict:
    """The cleaned list's residual soft-proton measure (:mod:`xmmext.events.soft_protons`), with the
    out-of-FOV corners of the input list when it has them."""
    from xmmext.events.footprint import geometry_from_events
    from xmmext.events.particles import corner_spectrum
    geo = geometry_from_events(clean, cam)
    ev = read_events(clean, columns=["X", "Y", "PI"])
    corner, area = corner_spectrum(paths, ins.camera(cam), expression, np.asarray(gti), geo)
    filt = str(ev.key("FILTER", "Medium")).strip() or "Medium"
    return SP.measure(cam, ev.columns["X"], ev.columns["Y"], ev.columns["PI"], geo, corner, area, exposure_s,
                      filt if filt.lower() in ("thin", "medium", "thick") else "Medium")


def filter_observation(paths: ObsPaths, opts) -> tuple[dict, list]:
    """Step 1 (native) for every requested camera: write the per-camera outputs; return
    the filtering.json content and the files written.

    A camera that is absent or unusable is skipped with a warning and recorded (the step
    fails only when no camera is usable: see :mod:`xmmext.steps.filtering`)."""
    found = find_event_files(paths)
    check_observation(paths, {cam: files for cam, files in found.items() if cam in opts.cameras})
    summary: dict = {}
    written: list = []
    for cam in opts.cameras:
        if cam not in found:
            log.warning("%s: no event list in %s; camera skipped", cam, paths.event_dir)
            summary[cam] = {"status": "skipped", "reason": "no event list"}
        else:
            infiles, choice = exposures_to_use(found[cam])
            try:
                summary[cam], files = _filter_camera(paths, cam, infiles, choice, opts)
                written += files
            except DataError as exc:
                log.warning("%s: %s", cam, exc.message)
                summary[cam] = {"status": "failed", "reason": exc.message, "input": str(infiles[0])}
        if summary[cam]["status"] != "ok":      # an earlier run's products of it must not be used
            for stale in [*outputs_for(paths, cam), *paths.events.glob(f"{cam}_e[0-9]*")]:
                stale.unlink(missing_ok=True)
    return summary, written


def check_observation(paths: ObsPaths, found: dict) -> None:
    """Every event list belongs to this observation: XMM, the folder's OBS_ID, and one
    pointing (another observation's list dropped into the folder is refused, exit 2)."""
    first = None
    for cam, files in found.items():
        for f in files:
            h = fits.getheader(f, "EVENTS")
            tel, obs = str(h.get("TELESCOP", "XMM")).strip(), str(h.get("OBS_ID", paths.obsid)).strip()
            if tel and tel.upper() != "XMM":
                raise UsageError(f"{cam} event list is from {tel}, not XMM-Newton", f)
            if obs and obs != paths.obsid:
                raise UsageError(f"{cam} event list belongs to observation {obs}, not {paths.obsid}", f)
            if "RA_PNT" not in h or "DEC_PNT" not in h:
                continue
            here = (float(h["RA_PNT"]), float(h["DEC_PNT"]))
            if first is None:
                first = (here, f)
            elif _separation_arcmin(first[0], here) > 5.0:
                raise UsageError(f"{cam} event list points {_separation_arcmin(first[0], here):.1f}' away from "
                                 f"{Path(first[1]).name}: not one observation", f)


def _separation_arcmin(a: tuple, b: tuple) -> float:
    from astropy.coordinates import SkyCoord
    return float(SkyCoord(*a, unit="deg").separation(SkyCoord(*b, unit="deg")).arcmin)


def _filter_camera(paths: ObsPaths, cam: str, infiles: list, choice: str, opts) -> tuple[dict, list]:
    """One camera: its exposure screened, or each of its exposures screened and the cleaned
    lists merged (:mod:`xmmext.events.exposures`); the residual soft protons measured on the
    result. Returns its filtering.json entry and the files written."""
    if len(infiles) == 1:
        rec = _filter_exposure(paths, cam, infiles[0], opts, cam)
        rec["exposure_choice"] = choice
        written = outputs_for(paths, cam)
    else:
        parts = [_filter_exposure(paths, cam, f, opts, f"{cam}_e{k}") for k, f in enumerate(infiles, start=1)]
        written = [f for k in range(1, len(parts) + 1) for f in outputs_for(paths, f"{cam}_e{k}")]
        clean, gti = outputs_for(paths, cam)[:2]
        merged = merge_cleaned_lists([outputs_for(paths, f"{cam}_e{k}")[0] for k in range(1, len(parts) + 1)], clean)
        union = G.normalise(np.concatenate([np.array(r["gti"]).reshape(-1, 2) for r in parts]))
        write_fits(gti, fits.HDUList([fits.PrimaryHDU(), gti_hdu(union, "STDGTI")]))
        written += [clean, gti]
        rec = {**parts[0], "input": [str(f) for f in infiles], "exposure_choice": choice,
               "exposures": [{k: r[k] for k in ("input", "method", "threshold", "exposure_before_s",
                                                "exposure_after_s", "events_before", "events_after")} for r in parts],
               "exposure_before_s": sum(r["exposure_before_s"] for r in parts),
               "exposure_after_s": merged["livetime"], "events_before": sum(r["events_before"] for r in parts),
               "events_after": merged["events"], "gti": union.tolist()}
        rec["fraction_rejected"] = 1.0 - rec["exposure_after_s"] / rec["exposure_before_s"]
        log.info("%s: %s", cam, choice)
    rec["soft_protons"] = residual_soft_protons(paths, cam, outputs_for(paths, cam)[0], rec["expression"],
                                                rec["gti"], rec["exposure_after_s"])
    if rec["soft_protons"].get("warning"):
        log.warning("%s; the fit models them (--background auto)", SP.describe(cam, rec["soft_protons"]))
    return rec, written


def _filter_exposure(paths: ObsPaths, cam: str, infile, opts, prefix: str) -> dict:
    """Screen one exposure (light curve, flare GTI, selection): writes the files of
    :func:`outputs_for` ``prefix``; returns its filtering.json entry."""
    ev = read_events(infile, columns=needed_columns(cam, opts))
    if ev.camera != cam:
        raise UsageError(f"file name says {cam} but INSTRUME says {ev.camera}", infile)
    prefiltered, evidence = is_prefiltered(ev)
    res = flare_gti(ev, opts, prefiltered)
    ref_before = reference_gti(ev)
    if G.total(res.gti) <= 0:
        raise DataError("no good time left after flare screening: the observation is 100% flared "
                        f"(method {res.screening.method}, cut {res.screening.threshold:.3f} ct/s)", infile)
    expression = opts.expression(cam)
    out = outputs_for(paths, prefix)
    write_fits(out[1], fits.HDUList([fits.PrimaryHDU(), gti_hdu(res.gti, "STDGTI")]))
    write_fits(out[2], light_curve_hdulist(ev, res))
    stats = clean_events(ev, res.gti, expression, out[0])
    if stats["events_after"] == 0:
        out[0].unlink()
        raise DataError("no events left after cleaning", infile)
    ref = REFERENCE_CCD[cam] if REFERENCE_CCD[cam] in ev.gtis else None
    before = G.total(ref_before) * (dead_time_fraction(ev.header, ref) if ref else 1.0)
    after = float(fits.getheader(out[0], "EVENTS")["LIVETIME"])
    plot_light_curve(ev, res, out[3], (before, after))      # its title states what filtering.json states
    rec = {
        "status": "ok", "input": str(infile),
        "prefiltered": prefiltered, "prefilter_evidence": evidence,
        "input_gti_tables": ["STDGTInn"] + ev.filter_gti_names,
        "exposure_kind": "live time (LIVETInn/ONTIMEnn dead-time fraction of the input)",
        "method": res.screening.method,
        "threshold": res.screening.threshold if np.isfinite(res.screening.threshold) else None,
        "lower_limit": None if not np.isfinite(res.screening.lower) else res.screening.lower,
        "quiescent_mean": res.screening.mean, "quiescent_sigma": res.screening.sigma,
        "sigma": opts.sigma, "binsize_s": opts.binsize, "min_gti_s": opts.min_gti,
        "expression": expression,
        "exposure_before_s": before, "exposure_after_s": after,
        "fraction_rejected": 1.0 - after / before if before > 0 else None,
        **stats, "gti": res.gti.tolist(),
    }
    if res.note:
        rec["note"] = res.note
        log.warning("%s: %s", cam, res.note)
    log.info("%s: %s kept %.0f of %.0f s (%.1f%% rejected), %d of %d events", cam, rec["method"], after,
             before, 100 * rec["fraction_rejected"], stats["events_after"], stats["events_before"])
    return rec
