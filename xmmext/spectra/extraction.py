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
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage

import xmmext.instrument as ins
import xmmext.spectra.responses as R
import xmmext.events.soft_protons as SP
from xmmext.events.out_of_time import oot_fraction, out_of_time_in_regions
from xmmext.spectra.model_inputs import write_background_model_files
from xmmext.spectra.responses import extended_arf
from xmmext.core.errors import DataError, UsageError
from xmmext.events.reader import read_events
from xmmext.events.footprint import Geometry, camera_livetime, ccd_livetimes, geometry_from_events
from xmmext.spectra.grouping import group_spectrum, parse_group
from xmmext.spectra.ogip import check_response, pha_hdulist
from xmmext.events.particles import corner_spectrum, particle_in_region
from xmmext.core.fileio import read_json, save_figure, write_fits
from xmmext.sky.images import ImageGrid, coverage_map
from xmmext.core.paths import ObsPaths
from xmmext.sky.extraction_region import ExtractionRegion, area_fraction_map, read_ds9
from xmmext.sky.surface_brightness import (brightness_image, flux_in_region, flux_ratio_rel_error, is_usable,
                                 psf_spill_factors)

log = logging.getLogger("xmmext.spectra.extraction")
BACKSCAL_STEP_PX = 20.0           # 1" sampling grid for region areas
ARF_REF_BAND = (0.5, 2.0)         # keV, band of the brightness map that weights the ARF
MIN_SPECTRUM_COUNTS = 50          # fewer source counts give no fit worth writing down (2 groups of 25)


# --- areas, spectra, responses -------------------------------------------------------------
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


def vignetted_area_ratio(src: ExtractionRegion, bkg: ExtractionRegion, grid: ImageGrid, cov: np.ndarray,
                         energies_kev: np.ndarray, geo: Geometry) -> np.ndarray:
    """Ratio source/background of the vignetting-weighted exposed areas, vs energy."""
    fs, fb = area_fraction_map(src, grid) * cov, area_fraction_map(bkg, grid) * cov
    return _vignetted_sum(fs, grid, energies_kev, geo) / _vignetted_sum(fb, grid, energies_kev, geo)


def _vignetted_sum(weight: np.ndarray, grid: ImageGrid, energies_kev: np.ndarray, geo: Geometry) -> np.ndarray:
    """sum(weight x vignetting(E)) over the image, for each energy."""
    X, Y = grid.centres()
    used = weight > 0
    theta = geo.off_axis_arcmin(X[used], Y[used])
    return np.array([np.sum(weight[used] * ins.vignetting(geo.camera, theta, e)) for e in energies_kev])


def source_in_background(sb: dict, centre: tuple[float, float], src: ExtractionRegion, bkg: ExtractionRegion,
                         grid: ImageGrid, cov: np.ndarray, energies_kev: np.ndarray, geo: Geometry,
                         spill: dict) -> np.ndarray:
    """The source's own counts recorded in the background region per count recorded in the
    source region, vs energy, from step 2's beta model: flux ratio (fine sampling) x each
    region's brightness-weighted mean of coverage x vignetting x the PSF's spill factor
    (``spill``: {"src", "bkg"}, :func:`~xmmext.sky.surface_brightness.psf_spill_factors`)."""
    image = brightness_image(sb, centre, grid)
    ws, wb = area_fraction_map(src, grid) * image, area_fraction_map(bkg, grid) * image
    if ws.sum() <= 0 or wb.sum() <= 0:
        return np.zeros(len(energies_kev))
    mean_s = _vignetted_sum(ws * cov, grid, energies_kev, geo) / ws.sum()
    mean_b = _vignetted_sum(wb * cov, grid, energies_kev, geo) / wb.sum()
    flux = flux_in_region(sb, centre, bkg) / max(flux_in_region(sb, centre, src), 1e-300)
    return flux * spill["bkg"] / spill["src"] * np.where(mean_s > 0, mean_b / np.where(mean_s > 0, mean_s, 1.0), 0.0)


def background_scaling(c_bkg: np.ndarray, particle_bkg: np.ndarray, bs_src: float, bs_bkg: float,
                       vig_ratio_per_channel: np.ndarray, smooth_channels: float = 20.0,
                       c_src: np.ndarray | None = None, source_per_net: np.ndarray | None = None,
                       out_of_time: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel factor taking background-region counts to what is subtracted from the
    source region, and the source's own counts in the background region left unsubtracted.

    The background region's counts are split into the particle part (``particle_bkg``: its
    expected counts there; not vignetted, so it scales with area), pn out-of-time events
    (``out_of_time`` = their expected counts in the source and background regions: they
    follow the CCD columns of the bright parts, not the sky, so the source region's own
    are subtracted instead of a scaled share of the annulus's), the source's own emission
    (``source_per_net`` x the source region's net counts, from step 2's beta model:
    :func:`source_in_background`; not subtracted at all) and the sky (the rest: vignetted,
    so it scales with the vignetting-weighted area). Scaled with the sky, the source's part
    took 14% of a cluster's counts with a 3-4' annulus and raised the factor that also
    applies to the particles; out-of-time events were 3% of the cluster counts left in the
    outer annuli of a profile (both biased kT low).
    All are smoothed over ``smooth_channels`` (sigma 0.1 keV) before the ratio is formed:
    the particle fraction climbs from ~0.1 to ~0.95 across the band, and a 0.5 keV
    smoothing blurred it enough to bias the fitted kT 2.5% low over 10 simulated
    observations (benchmarks/bench_coverage.py).
    """
    a = bs_src / bs_bkg
    n = len(c_bkg)
    if particle_bkg.sum() == 0 and source_per_net is None and out_of_time is None:
        return np.full(n, a), np.zeros(n)

    def smooth(x):
        return ndimage.gaussian_filter1d(np.asarray(x, float), smooth_channels)
    b = smooth(c_bkg)
    q = np.minimum(smooth(particle_bkg), b)
    v = vig_ratio_per_channel
    oot_s, oot_b = (smooth(x) for x in out_of_time) if out_of_time is not None else (np.zeros(n), np.zeros(n))
    fixed = q * a + oot_s                  # subtracted whatever the sky is
    rest = b - q - oot_b                   # sky + the source's own emission
    own = np.zeros(n)
    if source_per_net is not None and c_src is not None:
        # net = s - subtracted, own = k net, subtracted = fixed + (rest - own) v: solved for own
        s = smooth(c_src)
        kv = np.clip(source_per_net * v, 0.0, 0.9)
        subtracted = (fixed + rest * v - kv * s) / (1.0 - kv)
        own = np.clip(source_per_net * (s - subtracted), 0.0, 0.999 * np.clip(rest, 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(b > 0, (fixed + np.clip(rest - own, 0.0, None) * v) / b, a)
        own_share = np.where(b > 0, own / b, 0.0)
    eff = np.where(np.isfinite(eff) & (eff > 0), eff, a)
    # the unsmoothed background counts carry the source's share channel by channel
    return eff, own_share * c_bkg


def constant_within_groups(eff: np.ndarray, c_bkg: np.ndarray, grouping: np.ndarray) -> np.ndarray:
    """The per-channel background scaling made constant within each group of the grouped
    spectrum (background-count-weighted mean, so each group's subtracted counts are
    unchanged): fitting programs reduce a per-channel BACKSCAL to one value per group
    (sherpa takes the mid-range), which for a varying scaling is a bias."""
    gid = np.cumsum(np.asarray(grouping) == 1) - 1
    gid = np.clip(gid, 0, None)
    n = gid.max() + 1
    w = np.bincount(gid, c_bkg.astype(float), n)
    num = np.bincount(gid, eff * c_bkg, n)
    mean = np.bincount(gid, eff, n) / np.bincount(gid, minlength=n)
    per_group = np.where(w > 0, num / np.where(w > 0, w, 1.0), mean)
    return per_group[gid]


# --- the step --------------------------------------------------------------------------------
def _regions_for(paths: ObsPaths, opts, meta):
    src_path = opts.src_reg or paths.regions / "src.reg"
    bkg_path = opts.bkg_reg or paths.regions / "bkg.reg"
    for p in (src_path, bkg_path):
        if not Path(p).exists():
            raise UsageError("region file not found (run step 2, generate_regions.sh, or give --src-reg/--bkg-reg)", p)
    src = read_ds9(src_path, meta["ra_pnt"], meta["dec_pnt"])
    bkg = read_ds9(bkg_path, meta["ra_pnt"], meta["dec_pnt"])
    # the background must not overlap the source region
    d = math.hypot(src.x - bkg.x, src.y - bkg.y)
    if bkg.is_annulus and d < 1.0:
        overlap = bkg.r_in < src.r_out
    else:
        overlap = d < src.r_out + bkg.r_out and not (bkg.is_annulus and d + src.r_out <= bkg.r_in)
    if overlap:
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
    summary: dict = {"grouping": opts.group, "cameras": {}}
    written: list = []
    for cam_name in opts.cameras:
        if filt.get(cam_name, {}).get("status") != "ok" or not paths.clean_events(cam_name).exists():
            log.warning("%s: no cleaned events; camera skipped", cam_name)
            summary["cameras"][cam_name] = {"status": "skipped", "reason": "no cleaned events"}
            continue
        try:
            rec = _camera_spectra(paths, cam_name, opts, spec, filt[cam_name], out)
        except DataError as exc:
            log.warning("%s: %s", cam_name, exc.message)
            summary["cameras"][cam_name] = {"status": "skipped", "reason": exc.message}
            continue
        summary["cameras"][cam_name] = rec
        written += [Path(f) for f in rec["files"].values()]
    usable = [c for c, s in summary["cameras"].items() if s.get("status") == "ok"]
    if usable and plot:
        _plot(out, usable)
        written.append(out / "spectra.png")
    return summary, written


def _out_of_time(ev, cam: ins.Camera, geo, src, bkg) -> tuple[dict, float] | None:
    """pn: the out-of-time events expected in the source and background regions and the
    corners, per channel, with the mode's OOT fraction (an unknown mode is taken as full
    frame, the commonest and the largest fraction); None for MOS."""
    if cam.name != "pn":
        return None
    fraction = oot_fraction(cam.name, ev)
    return out_of_time_in_regions(cam, geo, ev.columns, fraction, src, bkg), fraction


def _corner_particles(corner: np.ndarray, oot) -> np.ndarray:
    """The corner spectrum without its pn out-of-time events (the sources' columns run
    through the corners: on a simulated cluster they are 20% of the pn corner counts at
    0.5-2 keV), i.e. the particles alone, for the local background's scaling."""
    if oot is None or corner.sum() == 0:
        return corner
    return np.clip(corner - oot[0]["corner"], 0.0, None)


def _camera_spectra(paths: ObsPaths, cam_name: str, opts, spec, filt: dict, out: Path) -> dict:
    """One camera's spectra and responses; ``filt`` is its step-1 record in filtering.json."""
    cam = ins.camera(cam_name)
    ev = read_events(paths.clean_events(cam_name), columns=["X", "Y", "PI", "CCDNR", "RAWX"])
    meta = {"ra_pnt": float(ev.key("RA_PNT")), "dec_pnt": float(ev.key("DEC_PNT")),
            "pa_pnt": float(ev.key("PA_PNT")), "filter": str(ev.key("FILTER", "Medium")).strip() or "Medium",
            "obsid": str(ev.key("OBS_ID", paths.obsid)), "date_obs": str(ev.key("DATE-OBS", ""))}
    src, bkg, src_path, bkg_path = _regions_for(paths, opts, meta)
    geo = geometry_from_events(paths.clean_events(cam_name), cam_name, sorted(ev.gtis) or None)
    bs_src = backscal(src, geo)
    bs_bkg = backscal(bkg, geo)
    if bs_src <= 0:
        raise DataError("the source region has zero exposed area on this camera", src_path)
    if bs_bkg <= 0:
        raise DataError("the background region has zero exposed area on this camera", bkg_path)
    x, y, pi = ev.columns["X"].astype(float), ev.columns["Y"].astype(float), ev.columns["PI"]
    in_src, in_bkg = src.contains(x, y), bkg.contains(x, y)
    c_src, c_bkg = ins.pi_spectrum(pi[in_src], cam), ins.pi_spectrum(pi[in_bkg], cam)
    if c_src.sum() < MIN_SPECTRUM_COUNTS:
        raise DataError(f"too few counts in the source region for a spectrum ({int(c_src.sum())}; "
                        f"at least {MIN_SPECTRUM_COUNTS} are needed)", src_path)
    exposure = camera_livetime(ev.header)           # live time, as SAS's EXPOSURE
    gtis = {c: g for c, g in ev.gtis.items()}
    names = {"src": f"{cam_name}_src.pha", "bkg": f"{cam_name}_bkg.pha", "grp": f"{cam_name}_src_grp.pha",
             "rmf": f"{cam_name}.rmf", "arf": f"{cam_name}.arf"}
    # responses: user-supplied, or native
    rmf_name, arf_name = names["rmf"], names["arf"]
    if opts.rmf and opts.rmf.get(cam_name):
        rmf_name = _copy_user_file(opts.rmf[cam_name], out / names["rmf"], "RMF")
    else:
        write_fits(out / names["rmf"], R.rmf_hdulist(cam, meta["filter"]))
    grid = ImageGrid.around_pointing()
    cov = coverage_map(geo, grid, {c: t / exposure for c, t in ccd_livetimes(ev.header).items()})
    b_rate = float(in_bkg[(pi >= 500) & (pi < 2000)].sum()) / max(
        _exposure_weighted_area(bkg, grid, cov, exposure, geo), 1e-9)
    bright = brightness_map(x[in_src], y[in_src], pi[in_src], grid, geo, exposure,
                            b_rate, cov, centre=(src.x, src.y))
    sel_eff = R.selection_efficiency(cam, filt["expression"])
    sb, sb_centre = _surface_brightness(paths, src)
    # the beta model blurred by the PSF once, for the source ARF and the background's parts
    spill = (dict(zip(("src", "bkg"), psf_spill_factors(sb, sb_centre, [src, bkg], cam, grid)))
             if is_usable(sb) else None)
    psf_factor = None
    if opts.arf and opts.arf.get(cam_name):
        arf_name = _copy_user_file(opts.arf[cam_name], out / names["arf"], "ARF")
        exposed_fraction = None
    else:
        specresp, exposed_fraction = extended_arf(cam, src, grid, bright, cov, geo, meta["filter"])
        psf_factor = spill["src"] if spill else 1.0
        specresp = specresp * sel_eff * psf_factor
        write_fits(out / names["arf"], R.arf_hdulist(cam, specresp, meta["filter"], {
            "EXTENDED": (True, "extended-source ARF, brightness-weighted"),
            "EXPFRAC": (exposed_fraction, "exposed fraction of the source brightness"),
            "SELEFF": (sel_eff, "X-ray events kept by the event selection"),
            "PSFCORR": (psf_factor, "PSF: recorded/own emission of the region (beta)")}))
    files_src = {"RESPFILE": rmf_name, "ANCRFILE": arf_name, "BACKFILE": names["bkg"]}
    corner, area_corner = corner_spectrum(paths, cam, filt["expression"], np.array(filt["gti"]), geo)
    oot = _out_of_time(ev, cam, geo, src, bkg)
    particle, particle_from = particle_in_region(c_bkg, cam, _corner_particles(corner, oot), area_corner, bs_bkg)
    e_ch = (np.arange(cam.n_channels) + 0.5) * ins.CHANNEL_EV / 1000.0
    e_grid = np.linspace(0.1, cam.max_pi / 1000.0, 60)
    vig_ratio = np.interp(e_ch, e_grid, vignetted_area_ratio(src, bkg, grid, cov, e_grid, geo))
    grouping, quality = group_spectrum(c_src, cam, spec, c_bkg, bs_src / bs_bkg)
    source_per_net, own_note = None, "not modelled: subtracted with the background (--own-emission subtract)"
    own_rel_error = 0.0
    if opts.own_emission == "model":
        if is_usable(sb):
            source_per_net = np.interp(e_ch, e_grid, source_in_background(sb, sb_centre, src, bkg, grid, cov,
                                                                          e_grid, geo, spill))
            own_note = "predicted from step 2's beta model and not subtracted"
            own_rel_error = flux_ratio_rel_error(sb, sb_centre, bkg, src)
        else:
            own_note = "no beta model in regions.json: subtracted with the background"
    eff, own = background_scaling(c_bkg, particle, bs_src, bs_bkg, vig_ratio, c_src=c_src,
                                  source_per_net=source_per_net,
                                  out_of_time=(oot[0]["src"], oot[0]["bkg"]) if oot else None)
    eff = constant_within_groups(eff, c_bkg, grouping)
    bkg_backscal = bs_src / eff            # per channel: src BACKSCAL / bkg BACKSCAL(ch) = eff(ch)
    bkg_hdul = pha_hdulist(c_bkg, cam, meta, exposure, bkg_backscal, bkg, gtis,
                           {"RESPFILE": rmf_name, "ANCRFILE": arf_name}, hduclas2="BKG")
    bkg_hdul["SPECTRUM"].header["BKGAREA"] = (bs_bkg, "exposed area of the region (sky pixels^2)")
    bkg_hdul["SPECTRUM"].header["COMMENT"] = ("BACKSCAL is per channel: particle part scaled by area, sky part "
                                              "by vignetting-weighted area, the source's own emission (beta "
                                              "model) not subtracted (see xmmext/spectra.py)")
    write_fits(out / names["bkg"], bkg_hdul)
    sp_cards = SP.header_cards(filt.get("soft_protons"))
    for name, extra in (("src", ()), ("grp", (grouping, quality))):
        hdul = pha_hdulist(c_src, cam, meta, exposure, bs_src, src, gtis, files_src, *extra)
        hdul["SPECTRUM"].header.update(sp_cards)
        write_fits(out / names[name], hdul)
    # the files of the modelled background (step 4 --background model)
    model_info, model_files = write_background_model_files(
        out, cam, meta, {"src": (src, bs_src, names["grp"]), "bkg": (bkg, bs_bkg, names["bkg"])}, grid, cov, geo,
        sel_eff, corner, area_corner, exposure, gtis, rmf_name, sb, sb_centre, spill, oot)
    scale = bs_src / bs_bkg
    net = float(c_src.sum() - np.sum(eff * c_bkg))
    return {
        "status": "ok", "counts": int(c_src.sum()), "bkg_counts": int(c_bkg.sum()),
        "net_counts": net, "net_counts_error": float(math.sqrt(c_src.sum() + np.sum(eff ** 2 * c_bkg))),
        "net_counts_area_scaled": float(c_src.sum() - scale * c_bkg.sum()),
        "exposure_s": exposure, "net_rate": net / exposure,
        "backscal_src": bs_src, "backscal_bkg": bs_bkg, "backscal_ratio": scale,
        "bkg_scaling_mean": float(np.sum(eff * c_bkg) / max(c_bkg.sum(), 1)),
        "corner_counts": int(corner.sum()), "corner_area_sky_px2": area_corner,
        "particle_background": particle_from, "particle_counts_bkg_region": float(particle.sum()),
        "source_counts_bkg_region": float(own.sum()), "source_in_background": own_note,
        "source_counts_bkg_region_error": float(own.sum() * own_rel_error),
        "out_of_time_subtracted": float(oot[0]["src"].sum()) if oot else 0.0,
        "geometry": geo.to_json(),
        "groups": int(np.sum(grouping == 1) - np.sum(quality == 1)), "exposed_fraction": exposed_fraction,
        "psf_spill_factor": psf_factor,
        "files": {**{k: str(out / v) for k, v in names.items()}, **{p.name: str(p) for p in model_files}},
        "background_model_notes": model_info["notes"], "soft_protons": filt.get("soft_protons"),
        "src_region": str(src_path), "bkg_region": str(bkg_path),
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
