"""Issue 15: the PSF's mixing of a cluster's rings - the ring-to-ring matrix, the beta model
fitted through it, and the cross-talk coefficients of the profile - each against an
independent computation (Monte Carlo photons through the King PSF, a 2-D convolution)."""
from __future__ import annotations

import numpy as np
import pytest

from xmmext import instrument as ins
from xmmext.fitting.crosstalk import crosstalk_matrix
from xmmext.sky.images import ImageGrid
from xmmext.sky.extraction_region import ExtractionRegion
from xmmext.sky.surface_brightness import beta_ring_flux, fit_beta, psf_ring_matrix, psf_spill_factor

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`

PN = ins.camera("pn")


def _beta_photons(rng, n, rc_arcmin, beta, r_max_arcmin):
    """Radii (arcsec) of photons drawn from a projected beta model, then through the pn PSF."""
    q = 1.5 - 3 * beta
    umax = 1 - (1 + (r_max_arcmin / rc_arcmin) ** 2) ** q
    r = rc_arcmin * 60 * np.sqrt((1 - rng.uniform(0, umax, n)) ** (1 / q) - 1)
    phi = rng.uniform(0, 2 * np.pi, n)
    dx, dy = PN.sample_psf(rng, n)
    return r, np.hypot(r * np.cos(phi) + dx, r * np.sin(phi) + dy)


def test_ring_matrix_matches_photons_through_the_psf():
    rng = np.random.default_rng(3)
    edges = np.array([0, 15, 30, 60, 90, 120, 180, 240, 300.0])
    r_true, r_seen = _beta_photons(rng, 400_000, 1.0, 0.67, 5.0)
    T = psf_ring_matrix(edges, PN.encircled_energy, brightness=lambda r: (1 + (r / 60.0) ** 2) ** (0.5 - 3 * 0.67))
    for j in range(len(edges) - 1):
        # photons emitted in ring j: share recorded in each ring
        sel = (r_true >= edges[j]) & (r_true < edges[j + 1])
        mc = np.histogram(r_seen[sel], edges)[0] / sel.sum()
        tol = 0.003 + 3 * np.sqrt(T[:, j] * (1 - T[:, j]) / sel.sum())      # binomial noise
        assert np.all(np.abs(T[:, j] - mc) < tol), (j, T[:, j].round(3), mc.round(3))
    assert T[1, 1] < T[3, 3] and T[3, 3] > 0.6                 # a 15" ring keeps less than a 30" one


def test_beta_model_fitted_through_the_psf_describes_the_sky():
    """A beta model fitted to the blurred profile comes out too flat; through the PSF it
    returns the model the photons were drawn from."""
    rng = np.random.default_rng(5)
    edges = np.arange(0, 601, 15.0)
    _, r_seen = _beta_photons(rng, 300_000, 0.5, 0.67, 12.0)
    area = np.pi * np.diff(edges ** 2)
    sky = 0.002 * area                                            # flat sky, counts per ring
    counts = np.histogram(r_seen, edges)[0] + rng.poisson(sky)
    exposure = area                                               # flat exposure (per arcsec^2)
    particle = np.zeros_like(area)
    psf = fit_beta(edges, counts, exposure, particle, psf=PN.encircled_energy)
    flat = fit_beta(edges, counts, exposure, particle)
    assert psf["psf_blurred"] and not flat["psf_blurred"]
    assert psf["rc_arcmin"] == pytest.approx(0.5, rel=0.06) and psf["beta"] == pytest.approx(0.67, abs=0.02)
    assert flat["rc_arcmin"] > psf["rc_arcmin"] * 1.05           # the blurred image looks wider


def test_crosstalk_coefficients_agree_with_the_arfs_psf_factor():
    """For a cluster that follows the beta model, the cross-talk terms of each annulus add
    up to the recorded/own emission factor that its ARF carries (PSFCORR, computed by a
    2-D convolution on the image grid): sum_j C_ij F_j / F_i = 1."""
    sb = {"rc_arcmin": 1.2, "beta": 0.65}
    edges = np.array([0.0, 0.5, 1.0, 1.5, 2.2, 3.2, 4.5])
    grid = ImageGrid.around_pointing()
    centre = (ins.SKY_REF_PIX, ins.SKY_REF_PIX)
    px = 60.0 / ins.SKY_PIX_ARCSEC
    psfcorr = [psf_spill_factor(sb, centre, ExtractionRegion(*centre, a * px, b * px), PN, grid)
               for a, b in zip(edges[:-1], edges[1:])]
    C = crosstalk_matrix(edges, sb, PN.encircled_energy, psfcorr)
    flux = beta_ring_flux(edges, sb["rc_arcmin"], sb["beta"])
    total = C @ flux / flux
    assert np.allclose(total, 1.0, atol=0.02), total.round(4)
    assert np.all(np.diag(C) > 0.5) and np.all(np.diag(C) < 1.0)
    assert C[1, 0] > C[2, 0] > C[3, 0]                           # the centre reaches the next rings most
