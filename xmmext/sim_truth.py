"""What a simulated observation's truth (truth.json) predicts for a region: the share of
the cluster's photons in it and the norm a local-background-subtracted fit should give
(used by tests and benchmarks to compare fits with the truth)."""
from __future__ import annotations

import numpy as np

from . import instrument as ins


def _region_grid(region, n: int = 600):
    """Sample points (X, Y) over the region's bounding square and the area of one cell."""
    xs = np.linspace(region.x - region.r_out, region.x + region.r_out, n)
    X, Y = np.meshgrid(xs, xs + (region.y - region.x))
    return X, Y, (xs[1] - xs[0]) ** 2


def cluster_flux_fraction(truth: dict, region, n: int = 600) -> float:
    """Fraction of the simulated cluster's photons (before PSF and detector) falling in
    ``region`` (an ExtractionRegion, exclusions removed), from the truth's beta model."""
    c = truth["cluster"]
    rc = c["core_radius_arcmin"] * 60 / ins.SKY_PIX_ARCSEC
    X, Y, cell = _region_grid(region, n)
    sb = (1 + ((X - c["x"]) ** 2 + (Y - c["y"]) ** 2) / rc ** 2) ** (-3 * c["beta"] + 0.5)
    q = 1.5 - 3 * c["beta"]
    rmax = c["r_max_arcmin"] * 60 / ins.SKY_PIX_ARCSEC
    total = np.pi * rc ** 2 / (-q) * (1 - (1 + (rmax / rc) ** 2) ** q)      # integral of sb to rmax
    return float(np.sum(sb * region.contains(X, Y)) * cell / total)


def emission_weighted_kt(truth: dict, r_in_arcmin: float, r_out_arcmin: float) -> float:
    """The simulated cluster's kT in an annulus about its centre, weighted by emission
    measure (the norm of each isothermal shell of truth.json falling in the annulus)."""
    c = truth["cluster"]
    prof = c.get("kT_profile")
    if not prof:
        return float(c["kT"])

    def cdf(r):
        return 1.0 - (1.0 + (np.asarray(r, float) / c["core_radius_arcmin"]) ** 2) ** (1.5 - 3 * c["beta"])
    w = kt = 0.0
    for sh in prof["shells"]:
        lo, hi = max(sh["r_in"], r_in_arcmin), min(sh["r_out"], r_out_arcmin)
        if hi <= lo:
            continue
        share = float(cdf(hi) - cdf(lo)) / float(cdf(sh["r_out"]) - cdf(sh["r_in"])) * sh["norm_fraction"]
        w += share
        kt += share * sh["kT"]
    return kt / w
