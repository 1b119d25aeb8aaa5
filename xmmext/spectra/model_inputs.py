"""What the modelled background (``xspec_analysis.py --background model``) needs from step 3.

For each camera, beside the usual spectra (native backend):
  <cam>_src_sky.arf, <cam>_bkg_sky.arf   ARF of uniform sky emission in the source and
                                         background regions (area x vignetting x coverage,
                                         averaged over the region's area)
  <cam>_bkg_cluster.arf                  ARF of the source's own emission in the background
                                         region, weighted by step 2's beta model
  <cam>_corner.pha                       the out-of-FOV corner spectrum (particles only)
  pn_oot.fits                            pn only: the out-of-time events expected in each
                                         region, per channel (fixed in the fit)
  <cam>_bkgmodel.json                    areas (geometric and exposed, arcmin^2), the
                                         source's flux in the background region relative to
                                         the source region (beta model), the soft-proton
                                         weights, file names
With these the fit models the counts of all three regions at once (see
:mod:`xmmext.fitting.modelled_background`) instead of subtracting a scaled background.
"""
from __future__ import annotations

import numpy as np

import xmmext.instrument as ins
import xmmext.spectra.responses as R
from xmmext.core.fileio import write_fits, write_json
from xmmext.spectra.ogip import pha_hdulist
from xmmext.spectra.responses import extended_arf
from xmmext.sky.extraction_region import ExtractionRegion, area_fraction_map
from xmmext.sky.surface_brightness import brightness_image, flux_in_region, is_usable

__all__ = ["ARCMIN2_PER_PX2", "region_areas", "soft_proton_weight", "read_oot", "write_background_model_files"]

ARCMIN2_PER_PX2 = (ins.SKY_PIX_ARCSEC / 60.0) ** 2


def region_areas(region: ExtractionRegion, grid, cov: np.ndarray, exposed_px2: float) -> dict:
    """Geometric area (exclusions removed) and exposed area, arcmin^2."""
    frac = area_fraction_map(region, grid)
    pix_arcmin2 = (grid.binsize * ins.SKY_PIX_ARCSEC / 60.0) ** 2
    return {"area_arcmin2": float(frac.sum() * pix_arcmin2), "exposed_arcmin2": exposed_px2 * ARCMIN2_PER_PX2}


def soft_proton_weight(region: ExtractionRegion, grid, cov: np.ndarray, geo) -> float:
    """Mean soft-proton vignetting over the region's exposed area."""
    X, Y = grid.centres()
    w = area_fraction_map(region, grid) * cov
    if w.sum() <= 0:
        return 0.0
    return float(np.sum(w * ins.soft_proton_vignetting(geo.off_axis_arcmin(X, Y))) / w.sum())


def _write_oot(out, cam: ins.Camera, spectra: dict, fraction: float, info: dict) -> list:
    """pn_oot.fits (one column of expected OOT counts per region of the sidecar) and its
    sidecar entry."""
    from astropy.io import fits
    spectra = {name: v for name, v in spectra.items() if name in info["regions"]}
    cols = [fits.Column("CHANNEL", "J", array=np.arange(cam.n_channels))]
    cols += [fits.Column(name.upper(), "D", unit="count", array=v) for name, v in spectra.items()]
    hdu = fits.BinTableHDU.from_columns(cols, name="OOT")
    hdu.header["OOTFRAC"] = (fraction, "out-of-time events per in-time event")
    hdu.header["COMMENT"] = "expected out-of-time counts per channel in each region (fixed in the fit)"
    path = out / f"{cam.name}_oot.fits"
    write_fits(path, fits.HDUList([fits.PrimaryHDU(), hdu]))
    for name in spectra:
        info["regions"][name]["oot_file"] = path.name
    info["oot_fraction"] = fraction
    return [path]


def read_oot(path, region: str) -> np.ndarray:
    """A region's expected out-of-time counts per channel from ``<cam>_oot.fits``."""
    from astropy.io import fits
    with fits.open(path) as h:
        return np.asarray(h["OOT"].data[region.upper()], float)


def write_background_model_files(out, cam: ins.Camera, meta: dict, regions: dict, grid, cov, geo,
                                 sel_eff: float, corner: np.ndarray, corner_px2: float, exposure: float,
                                 gtis: dict, rmf_name: str, sb: dict | None, centre, spill: dict | None,
                                 oot: tuple[dict, float] | None = None) -> tuple[dict, list]:
    """Write the files above for one camera; return (the sidecar's content, files written).

    ``regions``: {"src": (region, exposed px^2, PHA name), "bkg": (...)}; ``sb`` the beta
    model of regions.json (None: the source's emission in the background region is left
    out, and the sidecar says so); ``spill``: the PSF spill factors of the beta model in the
    regions ({"src", "bkg"}, :func:`~xmmext.sky.surface_brightness.psf_spill_factors`); ``oot``: (:func:`out_of_time_in_regions`, OOT fraction)
    for pn, None otherwise."""
    name = cam.name
    written, info = [], {"camera": name, "exposure_s": exposure, "rmf": rmf_name, "regions": {},
                         "surface_brightness": sb, "notes": []}
    flat = np.ones((grid.n, grid.n))
    for key, (region, exposed_px2, pha) in regions.items():
        specresp, _ = extended_arf(cam, region, grid, flat, cov, geo, meta["filter"])
        arf = out / f"{name}_{key}_sky.arf"
        write_fits(arf, R.arf_hdulist(cam, specresp * sel_eff, meta["filter"], {
            "EXTENDED": (True, "uniform sky emission over the region")}))
        written.append(arf)
        info["regions"][key] = {"pha": pha, "sky_arf": arf.name, "sp_weight": soft_proton_weight(region, grid, cov, geo),
                                **region_areas(region, grid, cov, exposed_px2)}
    src, bkg = regions["src"][0], regions["bkg"][0]
    if is_usable(sb):
        ratio = flux_in_region(sb, centre, bkg) / max(flux_in_region(sb, centre, src), 1e-300)
        specresp, _ = extended_arf(cam, bkg, grid, brightness_image(sb, centre, grid), cov, geo, meta["filter"])
        specresp = specresp * spill["bkg"]
        arf = out / f"{name}_bkg_cluster.arf"
        write_fits(arf, R.arf_hdulist(cam, specresp * sel_eff, meta["filter"], {
            "EXTENDED": (True, "source emission in the bkg region (beta model)")}))
        written.append(arf)
        info["regions"]["bkg"].update(cluster_arf=arf.name, cluster_ratio=float(ratio))
    else:
        info["notes"].append("no surface-brightness model (regions.json): the source's own emission in the "
                             "background region is not modelled")
    if corner_px2 > 0 and corner.sum() > 0:
        ring = ExtractionRegion(geo.fov_centre[0], geo.fov_centre[1], geo.fov_radius, 3 * geo.fov_radius)
        hdul = pha_hdulist(corner, cam, meta, exposure, corner_px2, ring, gtis,
                           {"RESPFILE": rmf_name, "ANCRFILE": "none", "BACKFILE": "none"})
        hdul["SPECTRUM"].header["COMMENT"] = "out-of-FOV (corner) events: particle background only"
        pha = out / f"{name}_corner.pha"
        write_fits(pha, hdul)
        written.append(pha)
        info["regions"]["corner"] = {"pha": pha.name, "exposed_arcmin2": corner_px2 * ARCMIN2_PER_PX2,
                                     "area_arcmin2": corner_px2 * ARCMIN2_PER_PX2, "sp_weight": 0.0}
    else:
        info["notes"].append("no out-of-FOV corner events (a pre-filtered list): the particle level is set "
                             "by the in-FOV spectra alone")
    if oot is not None:
        written += _write_oot(out, cam, oot[0], oot[1], info)
    sidecar = out / f"{name}_bkgmodel.json"
    write_json(sidecar, info)
    written.append(sidecar)
    return info, written
