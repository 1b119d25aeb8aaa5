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


def column_shares(geo, inside) -> dict[int, np.ndarray]:
    """{ccd: share of each RAWX column's pixels that are usable and satisfy ``inside(x, y)``}."""
    shares = {}
    for n, c in geo.ccds.items():
        rx, ry = np.meshgrid(np.arange(1, c.nx + 1), np.arange(1, c.ny + 1))
        x = c.matrix[0, 0] * rx + c.matrix[0, 1] * ry + c.matrix[0, 2]
        y = c.matrix[1, 0] * rx + c.matrix[1, 1] * ry + c.matrix[1, 2]
        shares[n] = np.count_nonzero(inside(x, y) & c.good, axis=0) / c.ny
    return shares


def out_of_time_spectra(cam: ins.Camera, geo, events: dict, fraction: float, regions: dict) -> dict:
    """pn out-of-time events expected in each region, per channel: every in-time event has
    a twin with probability ``fraction`` at a uniformly random RAWY of its column (what
    epchain's simulated OOT list holds, scaled by the mode's OOT fraction), which lands in a
    region with the share of the column's usable pixels inside it. The recorded events
    already hold the twins (1 + fraction of the in-time ones), hence fraction / (1 +
    fraction) of them. Particle events count too: their twins are as uniform as they are,
    so what this adds to a region is taken back by the particle level measured in the
    corners (which loses its own share the same way). ``events``: RAWX, CCDNR, PI of the
    cleaned list; ``regions``: {name: inside(x, y)}. The OOT events' slightly wrong CTI
    correction is not modelled."""
    rawx, ccdnr = np.asarray(events["RAWX"], int), np.asarray(events["CCDNR"], int)
    chan = np.clip(np.asarray(events["PI"], int) // int(ins.CHANNEL_EV), 0, cam.n_channels - 1)
    out = {}
    for name, inside in regions.items():
        weight = np.zeros(len(rawx))
        for n, share in column_shares(geo, inside).items():
            on = (ccdnr == n) & (rawx >= 1) & (rawx <= len(share))
            weight[on] = share[rawx[on] - 1]
        out[name] = fraction / (1.0 + fraction) * np.bincount(chan, weights=weight, minlength=cam.n_channels)
    return out


def oot_fraction(cam: str, ev) -> float:
    """pn: the out-of-time events per in-time event of the list's readout mode (SUBMODE; an
    unknown mode is taken as full frame, the commonest and the largest fraction); MOS: 0
    (its 0.35% is neglected)."""
    if cam != "pn":
        return 0.0
    mode = str(ev.key("SUBMODE", "PrimeFullWindow")).strip()
    return ins.PN_OOT_FRACTION.get(mode, ins.PN_OOT_FRACTION["PrimeFullWindow"])


def out_of_time_image(geo, rawx, ccdnr, fraction: float, grid) -> np.ndarray:
    """pn out-of-time events expected in each pixel of an image grid: the twins of the
    recorded events (fraction / (1 + fraction) of them, as in :func:`out_of_time_spectra`)
    spread uniformly along their CCD column, i.e. the streaks that run from a bright source
    along the readout direction. For the detection background: without it a bright core's
    streak is found as a line of point sources."""
    rawx, ccdnr = np.asarray(rawx, int), np.asarray(ccdnr, int)
    ex, ey = grid.edges()
    image = np.zeros((grid.n, grid.n))
    for n, c in geo.ccds.items():
        per_column = np.bincount(np.clip(rawx[ccdnr == n] - 1, 0, c.nx - 1), minlength=c.nx).astype(float)
        if per_column.sum() == 0:
            continue
        rx, ry = np.meshgrid(np.arange(1, c.nx + 1), np.arange(1, c.ny + 1))
        usable = c.good.sum(axis=0)
        weight = np.where(c.good, fraction / (1.0 + fraction) * per_column / np.maximum(usable, 1), 0.0)
        x = c.matrix[0, 0] * rx + c.matrix[0, 1] * ry + c.matrix[0, 2]
        y = c.matrix[1, 0] * rx + c.matrix[1, 1] * ry + c.matrix[1, 2]
        image += np.histogram2d(y.ravel(), x.ravel(), bins=[ey, ex], weights=weight.ravel())[0]
    return image


def out_of_time_in_regions(cam: ins.Camera, geo, events: dict, fraction: float, src, bkg) -> dict:
    """:func:`out_of_time_spectra` for the source and background regions and the out-of-FOV
    corners (``src``, ``bkg``: ExtractionRegions)."""
    return out_of_time_spectra(cam, geo, events, fraction,
                               {"src": src.contains, "bkg": bkg.contains, "corner": lambda x, y: ~geo.in_fov(x, y)})


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
