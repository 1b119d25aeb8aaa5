"""Model fluxes in the standard bands, with errors from parameter draws on the covariance."""
from __future__ import annotations

import math

import numpy as np

import xmmext.xspec.library as xm
from xmmext.xspec.expression import ABSORBERS, ModelExpression

__all__ = ["KEV_TO_ERG", "FLUX_BANDS", "model_photon_flux", "energy_flux", "flux_table"]

KEV_TO_ERG = 1.602176634e-9
FLUX_BANDS = {"0.5-2": (0.5, 2.0), "0.1-2.4": (0.1, 2.4)}


def model_photon_flux(expr: ModelExpression, values: dict, edges: np.ndarray, unabsorbed: bool = False) -> np.ndarray:
    """Photons/cm^2/s per bin of the source model (no cross-normalisation)."""
    def ev(node):
        if node.op == "comp":
            c = node.component
            pv = [values[f"{c.name}.{p.name}"] for p in c.definition.params]
            if c.kind == "mul" and unabsorbed and c.xspec_name.lower() in ABSORBERS:
                return np.ones(len(edges) - 1)
            out = xm.evaluate(c.xspec_name, pv, edges)
            return out * values[f"{c.name}.norm"] if c.kind == "add" else out
        parts = [ev(k) for k in node.children]
        out = parts[0]
        for p in parts[1:]:
            out = out * p if node.op == "*" else out + p
        return out
    return ev(expr.tree)


def energy_flux(expr, values, band, unabsorbed=False) -> float:
    lo, hi = band
    edges = np.linspace(lo, hi, int((hi - lo) / 0.005) + 1)
    mid = 0.5 * (edges[:-1] + edges[1:])
    return float(np.sum(model_photon_flux(expr, values, edges, unabsorbed) * mid) * KEV_TO_ERG)


def flux_table(expr, values, cov_names, cov, opts) -> dict:
    """Absorbed/unabsorbed energy fluxes (erg/cm^2/s) with errors from parameter draws,
    and luminosities (erg/s, observed band, no K-correction) when a redshift is set."""
    rng = np.random.default_rng(opts.seed)
    draws = []
    if cov is not None and len(cov_names):
        mean = np.array([values[n] for n in cov_names])
        try:
            samples = rng.multivariate_normal(mean, cov, size=opts.flux_draws, check_valid="ignore")
        except (ValueError, np.linalg.LinAlgError):
            samples = np.empty((0, len(cov_names)))
        for s in samples:
            v = dict(values)
            v.update({n: float(x) for n, x in zip(cov_names, s)})
            if all(v[n] > 0 for n in cov_names if n.endswith("norm") or n.endswith(".kT")):
                draws.append(v)
    z = values.get(next((k for k in values if k.lower().endswith(".redshift")), ""), None)
    if opts.redshift is not None:
        z = opts.redshift
    dl_cm = None
    if z and z > 0:
        from astropy.cosmology import Planck18
        dl_cm = Planck18.luminosity_distance(z).to("cm").value
    q_lo, q_hi = 50 - opts.conf / 2, 50 + opts.conf / 2
    out = {}
    for band_name, band in FLUX_BANDS.items():
        for kind, unabs in (("absorbed", False), ("unabsorbed", True)):
            best = energy_flux(expr, values, band, unabs)
            rec = {"value": best, "lower": None, "upper": None, "unit": "erg/cm2/s", "n_draws": len(draws)}
            if draws:
                f = np.array([energy_flux(expr, d, band, unabs) for d in draws])
                rec["lower"], rec["upper"] = float(np.percentile(f, q_lo)), float(np.percentile(f, q_hi))
            out[f"{band_name}keV_{kind}"] = rec
            if dl_cm is not None and unabs:
                lum = {k: (None if rec[k] is None else rec[k] * 4 * math.pi * dl_cm ** 2)
                       for k in ("value", "lower", "upper")}
                out[f"{band_name}keV_luminosity"] = dict(lum, unit="erg/s", redshift=z,
                                                         cosmology="Planck18, observed band, no K-correction")
    return out


# --- PyXspec ----------------------------------------------------------------------------------------
