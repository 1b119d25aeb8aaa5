"""What a simulated observation's truth (truth.json) predicts for a region: the share of
the cluster's photons in it, the emission-weighted kT of an annulus and the noise-free
counts spectrum the telescope records in an annulus (used by tests and benchmarks to
compare fits with the truth)."""
from __future__ import annotations

import numpy as np

import xmmext.instrument as ins

__all__ = ["cluster_flux_fraction", "emission_weighted_kt", "cluster_spectrum", "expected_annulus_counts",
           "step1_selected"]


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


def cluster_spectrum(cluster: dict, energy_edges, kt: float | None = None) -> np.ndarray:
    """The truth's absorbed thermal model (``cluster``: truth.json's "cluster") for norm 1 at
    ``kt`` (default the cluster's), photons/cm^2/s per bin of ``energy_edges`` (keV)."""
    import xmmext.xspec.library as xm
    kt = cluster["kT"] if kt is None else kt
    thermal = cluster["model"].split("*")[-1]
    pars = {"bremss": [kt], "zbremss": [kt, cluster["redshift"]],
            "apec": [kt, cluster.get("abund"), cluster["redshift"]]}[thermal]
    return xm.evaluate("tbabs", [cluster["nH"]], energy_edges) * xm.evaluate(thermal, pars, energy_edges)


def expected_annulus_counts(truth: dict, r_in_arcmin: float, r_out_arcmin: float, camera: str,
                            arf: tuple, rmf, exposure: float, psfcorr: float = 1.0) -> np.ndarray:
    """Noise-free cluster counts per channel recorded in an annulus about the cluster's
    centre: every isothermal shell of the truth, mixed by the camera's PSF (encircled
    energy, the truth's beta model within rings), absorbed, folded through the annulus's
    ARF (``arf``: (ENERG_LO, ENERG_HI, SPECRESP); ``psfcorr``: the factor it carries for the
    PSF, taken out again since the mixing is done here) and RMF (:class:`ogip.Response`)."""
    from xmmext.sky.surface_brightness import beta_profile, beta_ring_flux, psf_ring_matrix
    c = truth["cluster"]
    shells = (c.get("kT_profile") or {}).get("shells") or [
        {"r_in": 0.0, "r_out": c["r_max_arcmin"], "kT": c["kT"]}]
    fine = np.unique(np.concatenate([np.arange(0.0, c["r_max_arcmin"] + 1e-9, 0.05), [r_in_arcmin, r_out_arcmin]]))
    mid = 0.5 * (fine[:-1] + fine[1:])
    kt = np.array([next((s["kT"] for s in shells if s["r_in"] <= m < s["r_out"]), shells[-1]["kT"]) for m in mid])
    rc, beta = c["core_radius_arcmin"], c["beta"]
    flux = beta_ring_flux(fine, rc, beta) / beta_ring_flux([0.0, c["r_max_arcmin"]], rc, beta)[0] * c["norm"]
    mixing = psf_ring_matrix(fine * 60.0, ins.camera(camera).encircled_energy,
                             brightness=lambda r: beta_profile(np.asarray(r) / 60.0, 1.0, rc, beta))
    inside = (fine[:-1] >= r_in_arcmin - 1e-9) & (fine[1:] <= r_out_arcmin + 1e-9)
    recorded = (mixing[inside] * flux[None, :]).sum(0)        # each ring's norm recorded in the annulus
    lo, hi, specresp = arf
    e = np.append(lo, hi[-1])
    photons = sum(recorded[kt == k].sum() * cluster_spectrum(c, e, k) for k in np.unique(kt))
    return (photons * specresp / psfcorr) @ rmf.matrix * exposure


def step1_selected(paths, camera: str, components=None) -> tuple:
    """A simulated camera's raw events (:func:`xmmext.events.reader.read_events`) and the mask of
    those step 1 kept (its recorded selection expression and GTIs, filtering.json), limited
    to the given truth components (e.g. ``("cluster",)``: the cluster's own photons) when
    given - the truth labels (data/<OBSID>/truth_<cam>_components.npy) are per raw event."""
    import json
    import xmmext.events.gti as gti
    from xmmext.events.reader import read_events
    from xmmext.events.selection import compile_expression
    record = json.loads((paths.events / "filtering.json").read_text())[camera]
    ev = read_events(paths.event_dir / f"{camera}_evt.fits")
    keep = compile_expression(record["expression"]).evaluate(ev.columns) \
        & gti.in_gti(ev.columns["TIME"], np.array(record["gti"]))
    if components is not None:
        codes = json.loads(paths.truth.read_text())["component_codes"]
        labels = np.load(paths.data / f"truth_{camera}_components.npy")
        keep &= np.isin(labels, [codes[c] for c in components])
    return ev, keep
