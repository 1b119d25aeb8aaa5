"""Residual soft protons: what the light-curve screening leaves, measured per camera.

Soft protons reach the detector through the mirrors, so they fall on the field of view
only (and less vignetted than X-rays); the quiescent particle background also falls on the
out-of-FOV corners. Two measures, written into filtering.json (``soft_protons``):

* corners in the input list: the in-FOV / out-of-FOV surface-brightness ratio in the hard
  band (8-12 keV MOS, 10-14 keV pn), in-FOV from the outer annulus 10'-13' of the field
  (De Luca & Molendi 2004, A&A 419, 837: below 1.15 not contaminated, up to 1.3 slightly,
  up to 1.5 contaminated, above very contaminated);
* no corners (SAS-cleaned lists): the 2.5-8.5 keV counts of the same outer annulus over what
  the particles (the measured template scaled to the annulus's own 10-12 keV counts) and the
  cosmic X-ray background (Gamma 1.46, 11.6 ph/cm2/s/sr/keV at 1 keV, through the vignetted
  area) predict there. Weaker: soft protons in the 10-12 keV band raise the particle level
  too, and a bright source's outskirts add to the annulus.

``significant`` when the ratio exceeds SIGNIFICANT_RATIO by more than 3 sigma: step 4 then
fits the soft protons with the source (``--background auto`` uses the modelled background)
and flags the fit; above WARNING_RATIO a warning is printed.
"""
from __future__ import annotations

import logging
import math

import numpy as np

import xmmext.events.particles as particles
import xmmext.instrument as ins

__all__ = ["HARD_BAND_KEV", "MID_BAND_KEV", "OUTER_ANNULUS_ARCMIN", "SIGNIFICANT_RATIO", "WARNING_RATIO",
           "CXB_1KEV", "CXB_INDEX", "LEVELS", "annulus_area_px2", "in_annulus", "measure", "cxb_counts",
           "HEADER_KEYS", "header_cards", "from_header", "describe"]

log = logging.getLogger("xmmext.events.soft_protons")
HARD_BAND_KEV = {"mos1": (8.0, 12.0), "mos2": (8.0, 12.0), "pn": (10.0, 14.0)}
MID_BAND_KEV = (2.5, 8.5)
OUTER_ANNULUS_ARCMIN = (10.0, 13.0)
SIGNIFICANT_RATIO = 1.15
WARNING_RATIO = 1.3
CXB_1KEV = 11.6 / 1.1818e7           # photons / cm^2 / s / keV / arcmin^2 at 1 keV
CXB_INDEX = 1.46
LEVELS = ((1.15, "not contaminated"), (1.3, "slightly contaminated"), (1.5, "contaminated"),
          (math.inf, "very contaminated"))


def annulus_area_px2(geo, r_in_arcmin: float, r_out_arcmin: float, step: float = 20.0) -> float:
    """Exposed area (sky pixels^2) of an annulus about the field-of-view centre."""
    r_out = r_out_arcmin * 60.0 / ins.SKY_PIX_ARCSEC
    cx, cy = geo.fov_centre
    ax = np.arange(-r_out + step / 2, r_out, step)
    X, Y = np.meshgrid(cx + ax, cy + ax)
    d = np.hypot(X - cx, Y - cy) * ins.SKY_PIX_ARCSEC / 60.0
    inside = (d >= r_in_arcmin) & (d < r_out_arcmin)
    return float(np.count_nonzero(geo.exposed(X[inside], Y[inside])) * step * step)


def in_annulus(geo, x, y, r_in_arcmin: float, r_out_arcmin: float) -> np.ndarray:
    d = np.hypot(np.asarray(x, float) - geo.fov_centre[0], np.asarray(y, float) - geo.fov_centre[1])
    d = d * ins.SKY_PIX_ARCSEC / 60.0
    return (d >= r_in_arcmin) & (d < r_out_arcmin)


def measure(camera: str, x, y, pi, geo, corner: np.ndarray, corner_area_px2: float, exposure_s: float,
            filt: str = "Medium") -> dict:
    """The residual soft-proton measure of one camera (module docstring): events of the
    cleaned list (``x``, ``y``, ``pi``), its geometry, the corner spectrum (counts per 5-eV
    channel) and its area; returns filtering.json's ``soft_protons`` entry."""
    r_in, r_out = OUTER_ANNULUS_ARCMIN
    r_out = min(r_out, geo.fov_radius * ins.SKY_PIX_ARCSEC / 60.0 - 0.25)
    area = annulus_area_px2(geo, r_in, r_out)
    ring = in_annulus(geo, x, y, r_in, r_out)
    pi = np.asarray(pi, float)
    if area <= 0 or r_out <= r_in:
        return {"method": "none", "reason": "no exposed outer annulus", "significant": False}
    if corner_area_px2 > 0 and corner.sum() > 0:
        lo, hi = HARD_BAND_KEV[camera]
        n_in = float(np.count_nonzero(ring & (pi >= lo * 1000) & (pi < hi * 1000)))
        ch = slice(int(lo * 1000 / ins.CHANNEL_EV), int(hi * 1000 / ins.CHANNEL_EV))
        n_out = float(corner[ch].sum())
        expected = n_out * area / corner_area_px2
        method = (f"in-FOV ({r_in:g}'-{r_out:.1f}') / out-of-FOV corners, {lo:g}-{hi:g} keV "
                  "(De Luca & Molendi 2004)")
        short = f"in/out-of-FOV {lo:g}-{hi:g} keV"
        var_expected = n_out * (area / corner_area_px2) ** 2
    else:
        lo, hi = particles.PARTICLE_BAND[camera]
        n_hard = float(np.count_nonzero(ring & (pi >= lo * 1000) & (pi < hi * 1000)))
        m_lo, m_hi = MID_BAND_KEV
        n_in = float(np.count_nonzero(ring & (pi >= m_lo * 1000) & (pi < m_hi * 1000)))
        share = particles.particle_band_integral(camera, m_lo, m_hi) / particles.particle_band_integral(camera, lo, hi)
        cxb = cxb_counts(camera, geo, r_in, r_out, area, exposure_s, filt)
        expected = n_hard * share + cxb
        var_expected = n_hard * share ** 2
        method = (f"{m_lo:g}-{m_hi:g} keV counts of the outer field ({r_in:g}'-{r_out:.1f}') over the particle "
                  f"template (scaled to its {lo:g}-{hi:g} keV counts) + the cosmic X-ray background: no corners")
        short = f"outer field {m_lo:g}-{m_hi:g} keV over particles + CXB"
    if expected <= 0:
        return {"method": method, "reason": "nothing expected in the band", "significant": False}
    ratio = n_in / expected
    err = ratio * math.sqrt(1.0 / max(n_in, 1.0) + var_expected / expected ** 2)
    sigma = (ratio - 1.0) / err if err > 0 else 0.0
    significant = bool(ratio > SIGNIFICANT_RATIO and (ratio - SIGNIFICANT_RATIO) / err > 3.0)
    level = next(name for limit, name in LEVELS if ratio < limit)
    return {"method": method, "short": short, "ratio": ratio, "ratio_error": err, "excess_sigma": sigma, "counts": n_in,
            "expected": expected, "level": level, "significant": significant,
            "warning": bool(ratio > WARNING_RATIO and significant)}


def cxb_counts(camera: str, geo, r_in: float, r_out: float, area_px2: float, exposure_s: float,
               filt: str) -> float:
    """Cosmic X-ray background counts expected in an annulus of the field in MID_BAND_KEV."""
    cam = ins.camera(camera)
    e = np.linspace(MID_BAND_KEV[0], MID_BAND_KEV[1], 61)
    de = e[1] - e[0]
    theta = 0.5 * (r_in + r_out)
    photons = CXB_1KEV * e ** (-CXB_INDEX)
    per_arcmin2 = float(np.sum(photons * cam.on_axis_area(e, filt) * ins.vignetting(camera, theta, e)) * de)
    return per_arcmin2 * area_px2 * (ins.SKY_PIX_ARCSEC / 60.0) ** 2 * exposure_s


HEADER_KEYS = ("SPRATIO", "SPRATERR", "SPSIGNIF", "SPLEVEL")


def header_cards(sp: dict | None) -> dict:
    """The measure as spectrum header keywords (what step 4 reads, whoever made the spectrum)."""
    if not sp or "ratio" not in sp:
        return {}
    return {"SPRATIO": (round(sp["ratio"], 4), "residual soft protons: observed/expected"),
            "SPRATERR": (round(sp["ratio_error"], 4), "its 1-sigma error"),
            "SPSIGNIF": (bool(sp["significant"]), f"ratio > {SIGNIFICANT_RATIO} by > 3 sigma"),
            "SPLEVEL": (sp["level"], "De Luca & Molendi 2004")}


def from_header(header) -> dict | None:
    """The measure read back from a spectrum's header (None when it has none)."""
    if "SPRATIO" not in header:
        return None
    return {"ratio": float(header["SPRATIO"]), "ratio_error": float(header.get("SPRATERR", 0.0)),
            "significant": bool(header.get("SPSIGNIF", False)), "level": str(header.get("SPLEVEL", "")),
            "method": "spectrum header (SPRATIO)"}


def describe(camera: str, sp: dict) -> str:
    """One line on a camera's measure (for warnings, notes and flags)."""
    if "ratio" not in sp:
        return f"{camera}: residual soft protons not measured ({sp.get('reason', '-')})"
    return (f"{camera}: residual soft protons {sp['level']} (ratio {sp['ratio']:.2f} +- {sp['ratio_error']:.2f}, "
            f"{sp.get('short', sp['method'])})")
