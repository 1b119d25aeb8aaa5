"""The local background of step 3: what of the background region's spectrum is subtracted
from the source region's, channel by channel (written as a per-channel BACKSCAL).

The background region's counts are split into parts that scale differently to the source
region: particles (measured in the out-of-FOV corners, or the 10-12 keV band with the
template; not vignetted: by area), pn out-of-time events (the source region's own are
subtracted instead), the source's own emission in the annulus (predicted from step 2's
beta model and not subtracted) and the sky (vignetted: by vignetting-weighted area).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

import xmmext.instrument as ins
from xmmext.events.footprint import Geometry
from xmmext.events.out_of_time import oot_fraction, out_of_time_in_regions
from xmmext.events.particles import corner_spectrum, particle_in_region
from xmmext.sky.extraction_region import ExtractionRegion, area_fraction_map
from xmmext.sky.images import ImageGrid
from xmmext.sky.surface_brightness import brightness_image, flux_in_region, flux_ratio_rel_error, is_usable

__all__ = ["LocalBackground", "local_background", "vignetted_area_ratio", "source_in_background",
           "background_scaling", "constant_within_groups"]


@dataclass
class LocalBackground:
    """What the local background of one camera's regions holds, per channel."""
    scaling: np.ndarray           # background-region counts -> counts subtracted from the source region
    own: np.ndarray               # the source's own counts in the background region (not subtracted)
    own_note: str
    own_rel_error: float
    particle: np.ndarray          # expected particle counts in the background region
    particle_from: str
    corner: np.ndarray            # the out-of-FOV corner spectrum and its area (sky pixels^2)
    corner_area: float
    oot: tuple | None             # pn: (out_of_time_in_regions, fraction), else None


def local_background(c) -> LocalBackground:
    """The local background of one camera (``c``: its step-3 inputs, :class:`CameraInputs`
    of :mod:`xmmext.spectra.extraction`, with the beta model and the PSF spill)."""
    cam = c.cam
    corner, area_corner = corner_spectrum(c.paths, cam, c.filt["expression"], np.array(c.filt["gti"]), c.geo)
    oot = _out_of_time(c.ev, cam, c.geo, c.src, c.bkg)
    particle, particle_from = particle_in_region(c.c_bkg, cam, _corner_particles(corner, oot), area_corner,
                                                 c.bs_bkg)
    e_ch = (np.arange(cam.n_channels) + 0.5) * ins.CHANNEL_EV / 1000.0
    e_grid = np.linspace(0.1, cam.max_pi / 1000.0, 60)
    vig_ratio = np.interp(e_ch, e_grid, vignetted_area_ratio(c.src, c.bkg, c.grid, c.cov, e_grid, c.geo))
    source_per_net, own_note, own_rel_error = None, "not modelled: subtracted with the background " \
        "(--background annulus)", 0.0
    if c.own_emission == "model":
        if is_usable(c.sb):
            source_per_net = np.interp(e_ch, e_grid, source_in_background(c.sb, c.sb_centre, c.src, c.bkg, c.grid,
                                                                          c.cov, e_grid, c.geo, c.spill))
            own_note = "predicted from step 2's beta model and not subtracted"
            own_rel_error = flux_ratio_rel_error(c.sb, c.sb_centre, c.bkg, c.src)
        else:
            own_note = "no beta model in regions.json: subtracted with the background"
    eff, own = background_scaling(c.c_bkg, particle, c.bs_src, c.bs_bkg, vig_ratio, c_src=c.c_src,
                                  source_per_net=source_per_net,
                                  out_of_time=(oot[0]["src"], oot[0]["bkg"]) if oot else None)
    return LocalBackground(eff, own, own_note, own_rel_error, particle, particle_from, corner, area_corner, oot)


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
