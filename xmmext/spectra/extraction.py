"""Step 3's work (native backend): spectra, responses, BACKSCAL and grouping (the step: :mod:`xmmext.steps.spectra`).

For each camera, from the cleaned events and the regions of step 2 (or ``--src-reg`` /
``--bkg-reg``):
  * OGIP type-I PHA files for source and background: channels of 5 eV of PI (pn 4096,
    MOS 2400, as SAS with spectralbinsize=5), EXPOSURE, BACKSCAL, AREASCAL, the per-CCD
    GTI extensions and the region (REG) extension as SAS writes them, and
    RESPFILE/ANCRFILE/BACKFILE so XSPEC and sherpa find everything from the header;
  * BACKSCAL as backscale computes it: the region's area in sky pixels (0.05")^2 that
    falls on active CCDs inside the FOV, point-source exclusions removed. The background
    file carries BACKSCAL as a per-channel column (OGIP allows it; XSPEC and sherpa read
    it): src/bkg = area ratio for the particle background (measured in the out-of-FOV
    corners) and vignetting-weighted area ratio for the sky background, mixed per
    channel by their shares, so background subtraction is right for both;
  * RMF from the instrument model; extended-source ARF = on-axis area x vignetting
    averaged over the source's own (background-subtracted, exposure-corrected)
    brightness in the region, times the exposed fraction of that brightness (the
    ``extendedsource=yes, detmaptype=dataset`` idea of arfgen): the fitted norm is then
    the flux of the whole region;
  * grouping: minimum counts (default 25), minimum S/N, or optimal binning (Kaastra &
    Bleeker 2016), as GROUPING/QUALITY columns in <cam>_src_grp.pha; the ungrouped
    spectrum is kept;
  * spectra.json and spectra.png.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage

import xmmext.events.soft_protons as SP
import xmmext.instrument as ins
import xmmext.spectra.responses as R
from xmmext.core.errors import DataError, UsageError
from xmmext.core.fileio import read_json, save_figure, write_fits
from xmmext.core.paths import ObsPaths
from xmmext.events.footprint import Geometry, camera_livetime, ccd_livetimes, geometry_from_events
from xmmext.events.reader import EventList, read_events
from xmmext.sky.extraction_region import ExtractionRegion, area_fraction_map, read_ds9
from xmmext.sky.images import ImageGrid, coverage_map
from xmmext.sky.surface_brightness import is_usable, psf_spill_factors
from xmmext.spectra.grouping import group_spectrum, parse_group
from xmmext.spectra.local_background import LocalBackground, constant_within_groups, local_background
from xmmext.spectra.model_inputs import write_background_model_files
from xmmext.spectra.ogip import check_response, pha_hdulist
from xmmext.spectra.responses import extended_arf

__all__ = ["BACKSCAL_STEP_PX", "ARF_REF_BAND", "MIN_SPECTRUM_COUNTS", "backscal", "brightness_map",
           "extract_spectra", "CameraInputs", "own_emission_of"]

log = logging.getLogger("xmmext.spectra.extraction")
NO_EVENTS = "no cleaned events"     # the reason of a camera without data (its old spectra are removed)
BACKSCAL_STEP_PX = 20.0           # 1" sampling grid for region areas
ARF_REF_BAND = (0.5, 2.0)         # keV, band of the brightness map that weights the ARF
MIN_SPECTRUM_COUNTS = 50          # fewer source counts give no fit worth writing down (2 groups of 25)


# --- areas, brightness ------------------------------------------------------------------------
def backscal(region: ExtractionRegion, geo: Geometry, step: float = BACKSCAL_STEP_PX) -> float:
    """Exposed area of the region in sky pixels^2 (grid-sampled every ``step`` pixels)."""
    r = region.r_out
    xs = np.arange(region.x - r + step / 2, region.x + r, step)
    ys = np.arange(region.y - r + step / 2, region.y + r, step)
    rows = max(1, 250_000 // max(len(xs), 1))       # blocks of rows: few calls, bounded memory
    total = 0
    for k in range(0, len(ys), rows):
        X, Y = np.meshgrid(xs, ys[k:k + rows])
        inside = region.contains(X, Y)
        if inside.any():
            total += int(np.count_nonzero(geo.exposed(X[inside], Y[inside])))
    return float(total * step * step)


def brightness_map(x, y, pi, grid: ImageGrid, geo: Geometry, exposure_s, bkg_rate_per_pix,
                   coverage, centre: tuple | None = None) -> np.ndarray:
    """Background-subtracted, exposure-corrected 0.5-2 keV brightness (per image pixel),
    smoothed by 8". Where the camera sees nothing (chip gaps, dead CCDs, outside the FOV)
    the brightness is filled from the azimuthal profile about ``centre``, so the ARF
    knows how much of the source's flux falls where nothing is recorded."""
    lo, hi = ARF_REF_BAND
    sel = (pi >= lo * 1000) & (pi < hi * 1000)
    ex, ey = grid.edges()
    img, _, _ = np.histogram2d(y[sel], x[sel], bins=[ey, ex])
    X, Y = grid.centres()
    vig = ins.vignetting(geo.camera, geo.off_axis_arcmin(X, Y), 0.5 * (lo + hi))
    expo = exposure_s * vig * coverage
    sm_c = ndimage.gaussian_filter(img, 2.0)
    sm_e = ndimage.gaussian_filter(expo, 2.0)
    seen = sm_e > 0.05 * exposure_s
    rate = np.where(seen, sm_c / np.maximum(sm_e, 1e-9), 0.0)
    rate = np.clip(rate - bkg_rate_per_pix, 0.0, None)
    if centre is not None and seen.any():
        d = np.hypot(X - centre[0], Y - centre[1])
        step = 15.0 / ins.SKY_PIX_ARCSEC
        ring = (d / step).astype(int)
        nring = ring.max() + 1
        s_sum = np.bincount(ring[seen], weights=rate[seen], minlength=nring)
        s_n = np.bincount(ring[seen], minlength=nring)
        prof = np.where(s_n > 0, s_sum / np.maximum(s_n, 1), 0.0)
        rate = np.where(seen, rate, prof[ring])
    return rate


# --- the step --------------------------------------------------------------------------------
def _overlap(src: ExtractionRegion, bkg: ExtractionRegion) -> bool:
    """Whether the regions share area (circles and annuli exactly; other shapes sampled
    every pixel over the source's bounding circle)."""
    d = math.hypot(src.x - bkg.x, src.y - bkg.y)
    if src.shape is None and bkg.shape is None:
        if bkg.is_annulus and d < 1.0:
            return bkg.r_in < src.r_out
        return d < src.r_out + bkg.r_out and not (bkg.is_annulus and d + src.r_out <= bkg.r_in)
    if d >= src.r_out + bkg.r_out:
        return False
    xs = np.arange(src.x - src.r_out, src.x + src.r_out + 1.0, 1.0)
    X, Y = np.meshgrid(xs, xs - src.x + src.y)
    return bool(np.any(src.contains(X, Y) & bkg.contains(X, Y)))


def _regions_for(paths: ObsPaths, opts, meta):
    src_path = opts.src_reg or paths.regions / "src.reg"
    bkg_path = opts.bkg_reg or paths.regions / "bkg.reg"
    for p in (src_path, bkg_path):
        if not Path(p).exists():
            raise UsageError("region file not found (run step 2, generate_regions.sh, or give --src-reg/--bkg-reg)", p)
    src = read_ds9(src_path, meta["ra_pnt"], meta["dec_pnt"])
    bkg = read_ds9(bkg_path, meta["ra_pnt"], meta["dec_pnt"])
    if _overlap(src, bkg):        # the background must not overlap the source region
        raise UsageError("the background region overlaps the source region", bkg_path)
    return src, bkg, src_path, bkg_path


def extract_spectra(paths: ObsPaths, opts, out: Path | None = None, plot: bool = True) -> tuple[dict, list]:
    """Step 3 (native) for every requested camera: write spectra and responses (into
    ``out``, default results/<OBSID>/spectra); return the spectra.json content and the files
    written (the step and its record: :mod:`xmmext.steps.spectra`; the temperature profile
    calls it once per annulus). A camera that gives no spectrum is skipped with its reason."""
    out = Path(out) if out is not None else paths.spectra
    spec = parse_group(opts.group)
    filt = read_json(paths.events / "filtering.json", "filtering.json of step 1")
    summary: dict = {"grouping": spec.text(), "cameras": {}}
    written: list = []
    for cam_name in opts.cameras:
        if filt.get(cam_name, {}).get("status") != "ok" or not paths.clean_events(cam_name).exists():
            log.warning("%s: no cleaned events; camera skipped", cam_name)
            summary["cameras"][cam_name] = {"status": "skipped", "reason": NO_EVENTS}
            continue
        try:
            rec = _camera_spectra(paths, cam_name, opts, spec, filt[cam_name], out)
        except DataError as exc:
            log.warning("%s: %s", cam_name, exc.message)
            summary["cameras"][cam_name] = {"status": "skipped", "reason": exc.message}
            continue
        summary["cameras"][cam_name] = rec
        written += [Path(f) for f in rec["files"].values()]
    for cam_name, s in summary["cameras"].items():
        # a camera without data now: an earlier run's spectra of it must not be fitted (those of
        # a camera skipped for another reason are left; spectra.json says not to use them)
        if s.get("status") != "ok" and s.get("reason") == NO_EVENTS:
            for stale in [*out.glob(f"{cam_name}_*"), out / f"{cam_name}.rmf", out / f"{cam_name}.arf"]:
                if stale.is_file():
                    stale.unlink()
    usable = [c for c, s in summary["cameras"].items() if s.get("status") == "ok"]
    if usable and plot:
        _plot(out, usable)
        written.append(out / "spectra.png")
    return summary, written


@dataclass
class CameraInputs:
    """What one camera's spectra are made of (events, regions, areas, footprint, model)."""
    paths: ObsPaths
    cam: ins.Camera
    filt: dict                     # the camera's step-1 record
    ev: EventList
    meta: dict
    src: ExtractionRegion
    bkg: ExtractionRegion
    src_path: Path
    bkg_path: Path
    geo: Geometry
    bs_src: float                  # BACKSCAL (exposed area, sky pixels^2)
    bs_bkg: float
    c_src: np.ndarray              # counts per channel
    c_bkg: np.ndarray
    exposure: float                # live time (s)
    grid: ImageGrid
    cov: np.ndarray                # live-time-weighted coverage of each image pixel
    own_emission: str              # model (the source's emission in the annulus kept) or subtract
    sb: dict | None = None         # step 2's beta model, its centre, its PSF spill per region
    sb_centre: tuple = ()
    spill: dict | None = None


def _camera_spectra(paths: ObsPaths, cam_name: str, opts, spec, filt: dict, out: Path) -> dict:
    """One camera's spectra and responses; ``filt`` is its step-1 record in filtering.json."""
    c = _camera_inputs(paths, cam_name, opts, filt)
    names = {"src": f"{cam_name}_src.pha", "bkg": f"{cam_name}_bkg.pha", "grp": f"{cam_name}_src_grp.pha",
             "rmf": f"{cam_name}.rmf", "arf": f"{cam_name}.arf"}
    responses = _write_responses(c, opts, out, names)
    lb = local_background(c)
    grouping, quality = group_spectrum(c.c_src, c.cam, spec, c.c_bkg, c.bs_src / c.bs_bkg)
    lb.scaling = constant_within_groups(lb.scaling, c.c_bkg, grouping)
    _write_spectra(c, lb, out, names, responses, grouping, quality, spec)
    # the files of the modelled background (step 4 --background model)
    gtis = {k: g for k, g in c.ev.gtis.items()}
    model_info, model_files = write_background_model_files(
        out, c.cam, c.meta, {"src": (c.src, c.bs_src, names["grp"]), "bkg": (c.bkg, c.bs_bkg, names["bkg"])},
        c.grid, c.cov, c.geo, responses["sel_eff"], lb.corner, lb.corner_area, c.exposure, gtis,
        responses["rmf"], c.sb, c.sb_centre, c.spill, lb.oot)
    rec = _record(c, lb, responses, grouping, quality)
    rec["files"] = {**{k: str(out / v) for k, v in names.items()}, **{p.name: str(p) for p in model_files}}
    rec["background_model_notes"] = model_info["notes"]
    return rec


def _camera_inputs(paths: ObsPaths, cam_name: str, opts, filt: dict) -> CameraInputs:
    """Read one camera's cleaned events and regions; count the spectra; the beta model."""
    cam = ins.camera(cam_name)
    ev = read_events(paths.clean_events(cam_name), columns=["X", "Y", "PI", "CCDNR", "RAWX"])
    meta = {"ra_pnt": float(ev.key("RA_PNT")), "dec_pnt": float(ev.key("DEC_PNT")),
            "pa_pnt": float(ev.key("PA_PNT")), "filter": str(ev.key("FILTER", "Medium")).strip() or "Medium",
            "obsid": str(ev.key("OBS_ID", paths.obsid)), "date_obs": str(ev.key("DATE-OBS", ""))}
    src, bkg, src_path, bkg_path = _regions_for(paths, opts, meta)
    geo = geometry_from_events(paths.clean_events(cam_name), cam_name, sorted(ev.gtis) or None)
    bs_src, bs_bkg = backscal(src, geo), backscal(bkg, geo)
    if bs_src <= 0:
        raise DataError("the source region has zero exposed area on this camera", src_path)
    if bs_bkg <= 0:
        raise DataError("the background region has zero exposed area on this camera", bkg_path)
    x, y, pi = ev.columns["X"].astype(float), ev.columns["Y"].astype(float), ev.columns["PI"]
    c_src = ins.pi_spectrum(pi[src.contains(x, y)], cam)
    c_bkg = ins.pi_spectrum(pi[bkg.contains(x, y)], cam)
    if c_src.sum() < MIN_SPECTRUM_COUNTS:
        raise DataError(f"too few counts in the source region for a spectrum ({int(c_src.sum())}; "
                        f"at least {MIN_SPECTRUM_COUNTS} are needed)", src_path)
    exposure = camera_livetime(ev.header)           # live time, as SAS's EXPOSURE
    grid = ImageGrid.around_pointing()
    cov = coverage_map(geo, grid, {k: t / exposure for k, t in ccd_livetimes(ev.header).items()})
    c = CameraInputs(paths, cam, filt, ev, meta, src, bkg, Path(src_path), Path(bkg_path), geo, bs_src, bs_bkg,
                     c_src, c_bkg, exposure, grid, cov, own_emission_of(opts))
    c.sb, c.sb_centre = _surface_brightness(paths, src)
    # the beta model blurred by the PSF once, for the source ARF and the background's parts
    if is_usable(c.sb):
        c.spill = dict(zip(("src", "bkg"), psf_spill_factors(c.sb, c.sb_centre, [src, bkg], cam, grid)))
    return c


def own_emission_of(opts) -> str:
    """How the source's own emission in the background annulus is treated: predicted and
    left in (``model``), or subtracted with the annulus (``subtract``: ``--background annulus``)."""
    return "subtract" if getattr(opts, "background", "local") == "annulus" else "model"


def _write_responses(c: CameraInputs, opts, out: Path, names: dict) -> dict:
    """The RMF and the extended-source ARF (or the user's, copied); what they say."""
    cam_name = c.cam.name
    rmf_name, arf_name = names["rmf"], names["arf"]
    if opts.rmf and opts.rmf.get(cam_name):
        rmf_name = _copy_user_file(opts.rmf[cam_name], out / names["rmf"], "RMF")
    else:
        write_fits(out / names["rmf"], R.rmf_hdulist(c.cam, c.meta["filter"]))
    sel_eff = R.selection_efficiency(c.cam, c.filt["expression"])
    psf_factor = exposed_fraction = None
    if opts.arf and opts.arf.get(cam_name):
        arf_name = _copy_user_file(opts.arf[cam_name], out / names["arf"], "ARF")
    else:
        x, y, pi = (c.ev.columns[k] for k in ("X", "Y", "PI"))
        x, y = x.astype(float), y.astype(float)
        in_src, in_bkg = c.src.contains(x, y), c.bkg.contains(x, y)
        b_rate = float(in_bkg[(pi >= 500) & (pi < 2000)].sum()) / max(
            _exposure_weighted_area(c.bkg, c.grid, c.cov, c.exposure, c.geo), 1e-9)
        bright = brightness_map(x[in_src], y[in_src], pi[in_src], c.grid, c.geo, c.exposure, b_rate, c.cov,
                                centre=(c.src.x, c.src.y))
        specresp, exposed_fraction = extended_arf(c.cam, c.src, c.grid, bright, c.cov, c.geo, c.meta["filter"])
        psf_factor = c.spill["src"] if c.spill else 1.0
        write_fits(out / names["arf"], R.arf_hdulist(c.cam, specresp * sel_eff * psf_factor, c.meta["filter"], {
            "EXTENDED": (True, "extended-source ARF, brightness-weighted"),
            "EXPFRAC": (exposed_fraction, "exposed fraction of the source brightness"),
            "SELEFF": (sel_eff, "X-ray events kept by the event selection"),
            "PSFCORR": (psf_factor, "PSF: recorded/own emission of the region (beta)")}))
    return {"rmf": rmf_name, "arf": arf_name, "sel_eff": sel_eff, "psf_factor": psf_factor,
            "exposed_fraction": exposed_fraction}


def _write_spectra(c: CameraInputs, lb: LocalBackground, out: Path, names: dict, responses: dict,
                   grouping, quality, spec) -> None:
    """The background spectrum (per-channel BACKSCAL: the local background's scaling), the
    source spectrum and its grouped copy (the residual soft-proton measure in their headers)."""
    gtis = {k: g for k, g in c.ev.gtis.items()}
    rmf_arf = {"RESPFILE": responses["rmf"], "ANCRFILE": responses["arf"]}
    bkg_hdul = pha_hdulist(c.c_bkg, c.cam, c.meta, c.exposure, c.bs_src / lb.scaling, c.bkg, gtis, rmf_arf,
                           hduclas2="BKG")      # per channel: src BACKSCAL / bkg BACKSCAL(ch) = scaling(ch)
    bkg_hdul["SPECTRUM"].header["BKGAREA"] = (c.bs_bkg, "exposed area of the region (sky pixels^2)")
    bkg_hdul["SPECTRUM"].header["COMMENT"] = ("BACKSCAL is per channel: particle part scaled by area, sky part "
                                              "by vignetting-weighted area, the source's own emission (beta "
                                              "model) not subtracted (see xmmext/spectra/local_background.py)")
    write_fits(out / names["bkg"], bkg_hdul)
    files_src = {**rmf_arf, "BACKFILE": names["bkg"]}
    sp_cards = SP.header_cards(c.filt.get("soft_protons"))
    for name, extra in (("src", ()), ("grp", (grouping, quality))):
        hdul = pha_hdulist(c.c_src, c.cam, c.meta, c.exposure, c.bs_src, c.src, gtis, files_src, *extra)
        hdul["SPECTRUM"].header.update(sp_cards)
        if name == "grp":
            hdul["SPECTRUM"].header.update(spec.header_cards())
            hdul["SPECTRUM"].header["HISTORY"] = f"grouped by xmmext: {spec.text()}"
        write_fits(out / names[name], hdul)


def _record(c: CameraInputs, lb: LocalBackground, responses: dict, grouping, quality) -> dict:
    """The camera's entry of spectra.json."""
    eff, scale = lb.scaling, c.bs_src / c.bs_bkg
    net = float(c.c_src.sum() - np.sum(eff * c.c_bkg))
    return {
        "status": "ok", "counts": int(c.c_src.sum()), "bkg_counts": int(c.c_bkg.sum()),
        "net_counts": net, "net_counts_error": float(math.sqrt(c.c_src.sum() + np.sum(eff ** 2 * c.c_bkg))),
        "net_counts_area_scaled": float(c.c_src.sum() - scale * c.c_bkg.sum()),
        "exposure_s": c.exposure, "net_rate": net / c.exposure,
        "backscal_src": c.bs_src, "backscal_bkg": c.bs_bkg, "backscal_ratio": scale,
        "bkg_scaling_mean": float(np.sum(eff * c.c_bkg) / max(c.c_bkg.sum(), 1)),
        "corner_counts": int(lb.corner.sum()), "corner_area_sky_px2": lb.corner_area,
        "particle_background": lb.particle_from, "particle_counts_bkg_region": float(lb.particle.sum()),
        "source_counts_bkg_region": float(lb.own.sum()), "source_in_background": lb.own_note,
        "source_counts_bkg_region_error": float(lb.own.sum() * lb.own_rel_error),
        "out_of_time_subtracted": float(lb.oot[0]["src"].sum()) if lb.oot else 0.0,
        "geometry": c.geo.to_json(),
        "groups": int(np.sum(grouping == 1) - np.sum(quality == 1)),
        "exposed_fraction": responses["exposed_fraction"], "psf_spill_factor": responses["psf_factor"],
        "soft_protons": c.filt.get("soft_protons"),
        "src_region": str(c.src_path), "bkg_region": str(c.bkg_path),
    }


def _surface_brightness(paths: ObsPaths, src: ExtractionRegion) -> tuple[dict | None, tuple]:
    """Step 2's beta model and its centre (None when regions.json has none)."""
    from xmmext.core.fileio import read_record
    reg = read_record(paths.regions / "regions.json")
    sb = reg.get("surface_brightness")
    centre = (reg["center"]["x"], reg["center"]["y"]) if sb and reg.get("center") else (src.x, src.y)
    return sb, centre


def _exposure_weighted_area(region, grid, cov, exposure, geo: Geometry):
    """Pixels of the region, weighted by coverage and 0.5-2 keV vignetting, x exposure."""
    X, Y = grid.centres()
    frac = area_fraction_map(region, grid)
    vig = ins.vignetting(geo.camera, geo.off_axis_arcmin(X, Y), 1.25)
    return float(np.sum(frac * cov * vig) * exposure)


def _copy_user_file(src_path, dest, kind: str) -> str:
    import shutil
    from xmmext.core.fileio import atomic_path
    check_response(src_path, kind)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src_path, tmp)
    return Path(dest).name


def _plot(out: Path, cams: list[str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(cams), 1, figsize=(8, 2.6 * len(cams)), sharex=True, squeeze=False)
    for ax, cam_name in zip(axes[:, 0], cams):
        with fits.open(out / f"{cam_name}_src.pha") as hs, fits.open(out / f"{cam_name}_bkg.pha") as hb:
            cs, cb = hs[1].data["COUNTS"], hb[1].data["COUNTS"]
            bb = hb[1].data["BACKSCAL"] if "BACKSCAL" in hb[1].columns.names else hb[1].header["BACKSCAL"]
            scale = hs[1].header["BACKSCAL"] / bb
            cb = cb * scale
            scale = 1.0
        e = (np.arange(len(cs)) + 0.5) * ins.CHANNEL_EV / 1000.0
        k = 20                                        # 100 eV display bins
        n = len(cs) // k * k
        eb = e[:n].reshape(-1, k).mean(1)
        ax.step(eb, cs[:n].reshape(-1, k).sum(1), where="mid", color="k", lw=0.9, label="source region")
        ax.step(eb, scale * cb[:n].reshape(-1, k).sum(1), where="mid", color="C1", lw=0.9,
                label="background (scaled by BACKSCAL)")
        ax.set_yscale("log")
        ax.set_ylabel("counts / 100 eV")
        ax.set_title(ins.camera(cam_name).instrume, fontsize=9, loc="left")
        ax.legend(fontsize=8)
    axes[-1, 0].set_xscale("log")
    axes[-1, 0].set_xlim(0.2, 12)
    axes[-1, 0].set_xlabel("energy (keV)")
    fig.tight_layout()
    save_figure(out / "spectra.png", fig)
    plt.close(fig)
