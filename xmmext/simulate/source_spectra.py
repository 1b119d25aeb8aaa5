"""Photon spectra of the simulated sources (per bin of the instrument's response grid) and
the cluster's temperature structure (isothermal, or a cool core drawn in radial shells)."""
from __future__ import annotations

import numpy as np

import xmmext.instrument as ins
import xmmext.xspec.library as xm
from xmmext.simulate.events import beta_cdf
from xmmext.xspec.atomdb import find_apec_files

__all__ = ["egrid", "thermal_model", "cluster_photon_spectrum", "cluster_shells", "cluster_kt_at", "cool_core_kt",
           "powerlaw_spectrum", "counts_rate"]
# radial shells (arcmin) in which a cool-core cluster is drawn, each isothermal
_SHELL_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0,
                30.0, 40.0)


def egrid() -> np.ndarray:
    """Edges of the response energy grid (keV)."""
    return np.append(ins.RESP_ELO, ins.RESP_EHI[-1])


def thermal_model(cfg) -> str:
    """The cluster's thermal model: the configured one, or apec with AtomDB, else zbremss."""
    if cfg.thermal_model != "auto":
        return cfg.thermal_model
    return "apec" if find_apec_files() else "zbremss"


def cluster_photon_spectrum(cfg, model: str, kt: float | None = None) -> np.ndarray:
    """Photons/cm^2/s per response-grid bin of the whole cluster for norm = 1 (at ``kt``,
    default the cluster's)."""
    e = egrid()
    kt = cfg.kt if kt is None else kt
    absorb = xm.evaluate("tbabs", [cfg.nh], e)
    if model == "apec":
        return absorb * xm.evaluate("apec", [kt, cfg.abund, cfg.redshift], e)
    if model == "zbremss":
        return absorb * xm.evaluate("zbremss", [kt, cfg.redshift], e)
    return absorb * xm.evaluate("bremss", [kt], e)


def cluster_shells(cfg) -> list[dict]:
    """The cluster as isothermal radial shells: r_in, r_out (arcmin), kT, and the share of
    the norm (beta-model flux share). One shell when isothermal."""
    total = float(beta_cdf(cfg, cfg.r_max_arcmin))
    if cfg.kt_centre is None:
        return [{"r_in": 0.0, "r_out": cfg.r_max_arcmin, "kT": cfg.kt, "norm_fraction": 1.0}]
    edges = [r for r in _SHELL_EDGES if r < cfg.r_max_arcmin] + [cfg.r_max_arcmin]
    shells = []
    for r0, r1 in zip(edges[:-1], edges[1:]):
        share = float(beta_cdf(cfg, r1) - beta_cdf(cfg, r0)) / total
        shells.append({"r_in": r0, "r_out": r1, "kT": cool_core_kt(cfg, 0.5 * (r0 + r1)), "norm_fraction": share})
    return shells


def cluster_kt_at(cfg, r_arcmin: float) -> float:
    """The cluster's kT at a radius (isothermal, or the cool core's profile)."""
    return cfg.kt if cfg.kt_centre is None else cool_core_kt(cfg, r_arcmin)


def cool_core_kt(cfg, r_arcmin: float) -> float:
    """kT(r) of a cool core: kt_centre at the centre rising to kt, x^2/(1+x^2) with x = r/r_cool."""
    x2 = (r_arcmin / cfg.cool_radius_arcmin) ** 2
    return float(cfg.kt_centre + (cfg.kt - cfg.kt_centre) * x2 / (1.0 + x2))


def powerlaw_spectrum(gamma: float, nh: float) -> np.ndarray:
    """Absorbed power law, photons/cm^2/s per bin for norm 1."""
    e = egrid()
    return xm.evaluate("tbabs", [nh], e) * xm.evaluate("powerlaw", [gamma], e)


def counts_rate(photons: np.ndarray, cam: ins.Camera, filt: str) -> float:
    """On-axis count rate of a photon spectrum (no vignetting, no chips)."""
    emid = 0.5 * (ins.RESP_ELO + ins.RESP_EHI)
    return float(np.sum(photons * cam.on_axis_area(emid, filt)))
