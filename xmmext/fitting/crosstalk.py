"""PSF cross-talk between the annuli of a temperature profile (ESAS-style), fitted jointly.

XMM's PSF (King profile, HEW ~15") spreads a ring's photons over its neighbours: with
0.5' annuli only ~70% of what an annulus records is its own emission, the rest comes
mostly from the next rings in and out. In a cool-core cluster the bright cool centre
thus lowers the temperatures measured outside (by 2-4% on the simulated cool core).

The model of annulus i's spectrum (camera c) is

    counts_i = ARF_i x sum_j  C_ij  x  thermal_j          C_ij = T_ij / PSFCORR_i

where thermal_j is the absorbed thermal model of ring j (its own kT and norm: the ring's
own emission), T_ij the share of ring j's flux the camera records in ring i (from its
encircled energy, :func:`~xmmext.sky.surface_brightness.psf_ring_matrix`), and PSFCORR_i the
factor the ring's ARF already carries (recorded / own emission for the beta model), so
that for a cluster that follows the beta model every thermal_j is just ring j's emission.
Emission from beyond the last annulus (out to 10' past it; the PSF is truncated at 10') is given
the last annulus's spectrum, with the beta model's flux ratio. All annuli and cameras are
fitted together (W-stat with each annulus's local background, as the independent fits);
each annulus's kT and norm are free, the cameras' cross-normalisations are shared.
"""
from __future__ import annotations

import logging
from functools import reduce
from operator import add
from pathlib import Path

import numpy as np

import xmmext.instrument as ins
import xmmext.xspec.library as xm
from xmmext.sky.surface_brightness import beta_profile, beta_ring_flux, psf_ring_matrix
from xmmext.fitting.inputs import check_spectrum
from xmmext.fitting.session import sherpa_session
from xmmext.fitting.sherpa_setup import (CONF_SIGMA, apply_defaults, cross_normalisation, load_spectrum, minimise,
                                         par_record, response_edges)
from xmmext.fitting.sherpa_model import build_sherpa_model, register_energy_grids

__all__ = ["OUTER_STEPS_ARCMIN", "MIN_COEFFICIENT", "ROW_PARAMETERS", "crosstalk_matrix", "fit_crosstalk",
           "arf_psf_factor", "crosstalk_coefficients"]

log = logging.getLogger("xmmext.crosstalk")
# rings beyond the last annulus (arcmin past its edge) out to 10': the PSF model is
# truncated at 600", so nothing comes from further out
OUTER_STEPS_ARCMIN = np.array([0.25, 0.5, 1.0, 2.0, 4.0, 10.0])
MIN_COEFFICIENT = 1e-3        # smaller contributions are left out of a spectrum's model
# a profile row's keys and the thermal component's parameter names
ROW_PARAMETERS = (("kT", "kT"), ("norm", "norm"), ("abund", "Abundanc"))


def crosstalk_matrix(edges_arcmin, sb: dict, encircled_energy, psfcorr) -> np.ndarray:
    """C[i, j]: the contribution of ring j's own emission (its norm) to the spectrum of
    annulus i, relative to ring i's ARF (which includes ``psfcorr[i]``). ``edges_arcmin``:
    the annuli's edges (N + 1, from the centre out); ``sb``: the beta model of
    regions.json; ``encircled_energy``: the camera's, radius in arcsec."""
    edges = np.asarray(edges_arcmin, float)
    n = len(edges) - 1
    # beyond the last annulus: rings widening outwards (the PSF reaches in from near the edge)
    outer = np.append(edges, edges[-1] + OUTER_STEPS_ARCMIN)
    rc, beta = sb["rc_arcmin"], sb["beta"]
    T = psf_ring_matrix(outer * 60.0, encircled_energy,
                        brightness=lambda r: beta_profile(np.asarray(r) / 60.0, 1.0, rc, beta))[:n]
    flux = beta_ring_flux(outer, rc, beta)
    C = T[:, :n].copy()
    C[:, -1] += T[:, n:] @ flux[n:] / flux[n - 1]                  # the outside, as the last annulus
    return C / np.asarray(psfcorr, float)[:, None]


def fit_crosstalk(annuli: list[list[tuple[str, Path]]], coefficients: dict, expr, opts, start: list[dict],
                  backgrounds: list[dict] | None = None) -> dict:
    """Joint fit of every annulus's spectra with the cross-talk of :func:`crosstalk_matrix`.

    ``annuli``: per annulus its [(camera, spectrum path)]; ``coefficients``: {camera: C};
    ``expr``: the thermal model (e.g. tbabs*apec); ``opts``: the fit options of one annulus
    (band, nH, redshift, freezes, confidence level); ``start``: the independent fits' rows
    (kT, norm, abundance as starting values); ``backgrounds``: per annulus {camera: expected
    background counts per channel} (the modelled background of its independent fit, held
    fixed; cstat) - None for each annulus's local background (W-stat). Returns
    {"annuli": [{parameter: record}], "statistic": ..., "notes": [...]}."""
    ui = sherpa_session()
    ui.clean()
    xm.set_abundances(opts.abund_table)
    xm.set_cross_sections("vern")
    n = len(annuli)
    rings, ring_comps = [], []
    for j in range(n):
        model, comps = build_sherpa_model(expr, prefix=f"ring{j + 1}_")
        apply_defaults(expr, comps, opts)
        _start_values(comps, start[j])
        rings.append(model)
        ring_comps.append(comps)
    _link_absorption(ring_comps)
    cross, ids, grids, notes = {}, [], [], []
    for i, spectra in enumerate(annuli):
        for cam, path in spectra:
            data_id = len(ids) + 1
            notes += load_spectrum(ui, data_id, cam, path, check_spectrum(cam, path, opts), opts)
            ui.ignore_id(data_id, None, None)
            ui.notice_id(data_id, opts.emin, opts.emax)
            c = coefficients[cam][i]
            source = reduce(add, [float(c[j]) * rings[j] for j in range(n) if c[j] >= MIN_COEFFICIENT])
            if cam != annuli[0][0][0]:
                if cam not in cross:
                    cross[cam] = cross_normalisation(cam)
                source = cross[cam] * source
            if backgrounds is None:
                ui.set_source(data_id, source)
            else:
                ui.set_full_model(data_id, _with_fixed_background(ui.get_data(data_id), source, backgrounds[i][cam],
                                                                  f"background_{i + 1}_{cam}"))
            ids.append(data_id)
            grids.append(response_edges(data_id))
    register_energy_grids({f"{j}{k}": v for j, comps in enumerate(ring_comps) for k, v in comps.items()}, grids)
    has_bkg = backgrounds is None and all(ui.get_data(i).background_ids for i in ids)
    ui.set_stat("wstat" if has_bkg else "cstat")
    minimise(ids)
    fr = ui.get_fit_results()
    free = [p for comps in ring_comps for c in comps.values() for p in c.pars if not p.frozen and p.link is None]
    free += [c.c0 for c in cross.values()]
    errs = _intervals(ui, ids, free, opts.conf)
    notes.append(f"PSF cross-talk between the {n} annuli modelled (joint fit, {len(ids)} spectra); "
                 f"{opts.conf}% intervals from the covariance at the best fit"
                 + ("; each spectrum's modelled background held at its independent fit" if backgrounds else ""))
    rows = [{f"{c.name}.{p}": par_record(getattr(comps[c.name], p), errs)
             for c in expr.components for p in c.parameter_names()} for comps in ring_comps]
    return {"annuli": rows, "cross_norm": {cam: par_record(c.c0, errs) for cam, c in cross.items()},
            "statistic": {"name": "cstat (W-stat)" if has_bkg else "cstat", "value": float(fr.statval),
                          "dof": int(fr.dof)}, "notes": notes}


def _with_fixed_background(d, source, counts: np.ndarray, name: str):
    """The full model of a spectrum: the source folded through its response (times the
    exposure, as sherpa's folded models give a rate) + known background counts per channel."""
    from sherpa.astro.instrument import RSPModelPHA
    from sherpa.models.basic import Scale1D
    from xmmext.fitting.background_parts import channel_models, fixed
    _, _, FixedCounts = channel_models()
    folded = RSPModelPHA(d.get_arf(), d.get_rmf(), d, fixed(Scale1D, f"exposure_{name}", float(d.exposure)) * source)
    return folded + FixedCounts(name, np.asarray(counts, float))


def _start_values(comps: dict, row: dict) -> None:
    """Start each ring's thermal component at its independent fit (kT, norm, abundance)."""
    for obj in comps.values():
        for key, pname in ROW_PARAMETERS:
            par = getattr(obj, pname, None)
            if par is not None and row.get(key) and row[key].get("value") is not None:
                par.val = float(np.clip(row[key]["value"], par.min, par.max))


def _link_absorption(ring_comps: list[dict]) -> None:
    """One absorbing column for all rings (free or frozen as the options say)."""
    first = ring_comps[0]
    for comps in ring_comps[1:]:
        for name, obj in comps.items():
            for par in obj.pars:
                if par.name.lower() == "nh" and not par.frozen:
                    par.link = getattr(first[name], par.name)


def _intervals(ui, ids, free, level: int) -> dict:
    """Symmetric intervals from sherpa's covariance (a profile search over 2N+2 parameters
    of a joint fit would take tens of minutes): {fullname: (lo, hi)}."""
    ui.set_covar_opt("sigma", CONF_SIGMA[level])
    try:
        ui.covar(*ids, *free)
    except Exception as exc:              # at a bound the Hessian may fail: no intervals
        log.warning("cross-talk fit: covariance failed (%s): no intervals", exc)
        return {}
    r = ui.get_covar_results()
    return {name: (lo, hi) for name, lo, hi in zip(r.parnames, r.parmins, r.parmaxes)
            if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi)}


def arf_psf_factor(arf: Path) -> float:
    """PSFCORR of one of this pipeline's ARFs (1 for an ARF without it)."""
    from astropy.io import fits
    with fits.open(arf) as h:
        return float(h["SPECRESP"].header.get("PSFCORR", 1.0) or 1.0)


def crosstalk_coefficients(annuli: list[list[tuple[str, Path]]], edges_arcmin, sb: dict, opts) -> dict:
    """{camera: C} for the annuli's spectra (each camera's PSF and its ARFs' PSFCORR; a
    camera missing from an annulus has PSFCORR 1 there: that row of its matrix is unused)."""
    out = {}
    for cam in sorted({c for spectra in annuli for c, _ in spectra}):
        psfcorr = []
        for spectra in annuli:
            path = dict(spectra).get(cam)
            arf = None if path is None else check_spectrum(cam, path, opts)["ANCRFILE"]
            psfcorr.append(arf_psf_factor(arf) if arf is not None else 1.0)
        out[cam] = crosstalk_matrix(edges_arcmin, sb, ins.camera(cam).encircled_energy, psfcorr)
    return out
