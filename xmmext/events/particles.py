"""The particle (quiescent, unvignetted) background of a camera: its level and shape.

Two ways, said in spectra.json/regions.json:
  * out-of-FOV corner events (raw/PPS lists): their spectrum per unit area, with the same
    selection and good time as the cleaned list;
  * no corners (SAS-cleaned lists): the in-FOV counts at 10-12 keV, where the mirrors have
    almost no area, set the level, and the shape is the template measured on real
    background spectra (PARTICLE_TEMPLATE).
Used by step 2 (profile, detection background) and step 3 (background scaling).
"""
from __future__ import annotations

import numpy as np

import xmmext.events.gti as G
import xmmext.instrument as ins
from xmmext.events.reader import read_events
from xmmext.events.footprint import Geometry
from xmmext.core.paths import ObsPaths

__all__ = ["PARTICLE_BAND", "PARTICLE_TEMPLATE", "particle_shape", "particle_band_integral", "corner_spectrum",
           "corner_area", "particle_in_region", "particle_rates"]


# Band where the mirrors have almost no effective area: in-FOV counts there are particle
# background (plus residual soft protons); used to set the particle level when a cleaned
# list has no out-of-FOV corner events.
PARTICLE_BAND = {"mos1": (10.0, 12.0), "mos2": (10.0, 12.0), "pn": (10.0, 12.0)}
# Shape of the particle spectrum: counts per keV relative to the level in PARTICLE_BAND,
# in 1-keV bins from 6 keV, measured on the real SAS background spectra of NGC 7793
# (tools/derive_particle_template.py; MOS1/MOS2 averaged). pn shows its Cu/Ni/Zn complex
# at 7-9 keV. Below 6 keV those spectra are sky-dominated: the 6-7 keV value is held.
PARTICLE_TEMPLATE = {
    "mos": ((6, 7, 1.58), (7, 8, 1.30), (8, 9, 1.20), (9, 10, 1.23), (10, 11, 1.02), (11, 12, 0.98)),
    "pn": ((6, 7, 1.51), (7, 8, 2.07), (8, 9, 3.64), (9, 10, 1.15), (10, 11, 0.95), (11, 12, 1.05)),
}


def particle_shape(camera: str, energy_kev) -> np.ndarray:
    """Relative particle counts per keV at ``energy_kev`` (1 in the reference band)."""
    rows = PARTICLE_TEMPLATE["pn" if camera == "pn" else "mos"]
    edges = np.array([r[0] for r in rows] + [rows[-1][1]], float)
    vals = np.array([r[2] for r in rows])
    k = np.clip(np.searchsorted(edges, np.asarray(energy_kev, float), side="right") - 1, 0, len(vals) - 1)
    return vals[k]


def particle_band_integral(camera: str, lo_kev: float, hi_kev: float, step: float = 0.005) -> float:
    """Integral of :func:`particle_shape` over [lo, hi] keV (relative counts)."""
    e = np.arange(lo_kev + step / 2, hi_kev, step)
    return float(particle_shape(camera, e).sum() * step)


def corner_spectrum(paths: ObsPaths, cam: ins.Camera, expression: str, flare_gti,
                    geo: Geometry) -> tuple[np.ndarray, float]:
    """Particle-background spectrum from the out-of-FOV corners of the input event list
    (same selection as the cleaned list but for the out-of-FOV flag, same GTI) and the
    corner area in sky pixels^2. Cleaned lists have no corners: (zeros, 0)."""
    from xmmext.events.reader import exposures_to_use, find_event_files
    from xmmext.events.selection import compile_expression
    if not paths.event_dir.is_dir():            # SAS path from the ODF: no input event lists
        return np.zeros(cam.n_channels), 0.0
    files = find_event_files(paths).get(cam.name)
    if not files:
        return np.zeros(cam.n_channels), 0.0
    total = np.zeros(cam.n_channels)
    for path in exposures_to_use(files)[0]:      # every exposure step 1 merged
        ev = read_events(path, columns=["TIME", "PI", "PATTERN", "FLAG", "CCDNR"])
        cols = dict(ev.columns)
        flag = cols["FLAG"].astype(np.int64)
        corner = (flag & ins.OUT_OF_FOV_FLAG) != 0
        if not corner.any():
            continue
        cols["FLAG"] = flag & ~ins.OUT_OF_FOV_FLAG          # judge the rest of the selection as usual
        sel = corner & compile_expression(expression).evaluate(cols) & G.in_gti(cols["TIME"], flare_gti)
        total += ins.pi_spectrum(cols["PI"][sel], cam)
    return (total, corner_area(geo)) if total.sum() > 0 else (total, 0.0)


def corner_area(geo: Geometry, step: int = 4) -> float:
    """Area (sky pixels^2) of the usable CCD pixels outside the FOV, from the CCD maps."""
    total = 0.0
    for c in geo.ccds.values():
        rx, ry = np.meshgrid(np.arange(1, c.nx + 1, step), np.arange(1, c.ny + 1, step))
        x = c.matrix[0, 0] * rx + c.matrix[0, 1] * ry + c.matrix[0, 2]
        y = c.matrix[1, 0] * rx + c.matrix[1, 1] * ry + c.matrix[1, 2]
        out = ~geo.in_fov(x, y) & c.good[ry - 1, rx - 1]
        total += np.count_nonzero(out) * step * step * abs(np.linalg.det(c.matrix[:, :2]))
    return float(total)


def particle_in_region(c_region: np.ndarray, cam: ins.Camera, corner: np.ndarray, corner_area_px2: float,
                       region_area_px2: float) -> tuple[np.ndarray, str]:
    """Expected particle-background counts per channel in a region, and how it was found.

    With out-of-FOV corner events: their spectrum scaled by area. Without (cleaned lists):
    the region's own counts in the band where the mirrors have almost no area
    (:data:`PARTICLE_BAND`) set the level, and the shape is the template
    measured on real background spectra (:data:`PARTICLE_TEMPLATE`); said so
    in spectra.json."""
    if corner_area_px2 > 0 and corner.sum() > 0:
        return corner / corner_area_px2 * region_area_px2, "out-of-FOV corner events, scaled by area"
    lo, hi = PARTICLE_BAND[cam.name]
    c0, c1 = int(lo * 1000 / ins.CHANNEL_EV), min(int(hi * 1000 / ins.CHANNEL_EV), cam.n_channels)
    per_rel_kev = float(c_region[c0:c1].sum()) / particle_band_integral(cam.name, lo, hi)
    e_ch = (np.arange(cam.n_channels) + 0.5) * ins.CHANNEL_EV / 1000.0
    shape = particle_shape(cam.name, e_ch) * ins.CHANNEL_EV / 1000.0
    return per_rel_kev * shape, (f"no corner events: in-FOV {lo:g}-{hi:g} keV counts of the background "
                                 "region, spectral shape from the NGC 7793 background template")


def particle_rates(c, paths: ObsPaths, filt: dict, bands: dict, image_pixel_arcsec: float) -> tuple[dict, str]:
    """Particle background per band: counts / s / image pixel (not vignetted).

    ``c`` is a camera's image data (regions.CameraData: name, pi, exposure_s, coverage,
    geometry); ``bands`` {name: (lo, hi) keV}. From the out-of-FOV corners when the input
    list has them; otherwise from the in-FOV counts in :data:`PARTICLE_BAND`
    (no mirror area there) with the measured template shape, as for the spectra
    (:func:`particle_in_region`)."""
    cam = ins.camera(c.name)
    corner, area = corner_spectrum(paths, cam, filt["expression"], np.array(filt["gti"]), c.geometry)
    pix_px2 = (image_pixel_arcsec / ins.SKY_PIX_ARCSEC) ** 2
    out = {}
    if area > 0 and corner.sum() > 0:
        for band, (lo, hi) in bands.items():
            ch = slice(int(lo * 1000 / ins.CHANNEL_EV), int(hi * 1000 / ins.CHANNEL_EV) + 1)
            out[band] = float(corner[ch].sum()) / area * pix_px2 / c.exposure_s
        return out, "out-of-FOV corners"
    plo, phi = PARTICLE_BAND[c.name]
    n_hard = np.count_nonzero((c.pi >= plo * 1000) & (c.pi <= phi * 1000))
    per_rel = n_hard / max(float(c.coverage.sum()), 1e-9) / c.exposure_s / particle_band_integral(c.name, plo, phi)
    for band, (lo, hi) in bands.items():
        out[band] = per_rel * particle_band_integral(c.name, lo, hi)
    return out, f"in-FOV {plo:g}-{phi:g} keV counts, NGC 7793 template shape"
