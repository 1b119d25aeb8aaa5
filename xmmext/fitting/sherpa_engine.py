"""The sherpa fit: spectra loaded with sherpa's OGIP I/O (background and responses from
the header keywords), statistic cstat (W-stat with a background, as XSPEC) or chi2,
Levenberg-Marquardt, undetected components frozen, profile-likelihood errors (``conf``),
fluxes with errors. Everything happens in the engine's own sherpa session."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

import xmmext.xspec.library as xm
from xmmext.core.errors import UsageError
from xmmext.xspec.expression import ModelExpression
from xmmext.fitting.fluxes import flux_table
from xmmext.fitting.inputs import check_spectrum
from xmmext.fitting.session import sherpa_session
from xmmext.fitting.sherpa_model import build_sherpa_model, register_energy_grids
from xmmext.fitting.sherpa_setup import (CONF_SIGMA, all_pars, apply_defaults, check_model_not_zero, cross_normalisation,
                                          freeze_undetected, held_at_best_fit, load_spectrum, minimise, par_record,
                                          response_edges, scale_start_norms, xspec_name)

__all__ = ["fit_sherpa"]
log = logging.getLogger("xmmext.fitting")


# -----------------------------------------------------------------------------
def fit_sherpa(spectra: list[tuple[str, Path]], expr: ModelExpression, opts) -> dict:
    """Joint fit with sherpa; returns the fit.json content (without file names)."""
    ui = sherpa_session()
    ui.clean()                                # the engine's own session (see .session)
    xm.set_abundances(opts.abund_table)
    xm.set_cross_sections("vern")
    model, comps = build_sherpa_model(expr)
    apply_defaults(expr, comps, opts)
    ids = []
    cross = {}
    notes: list[str] = []
    for i, (cam, path) in enumerate(spectra, start=1):
        files = check_spectrum(cam, path, opts)
        notes.extend(load_spectrum(ui, i, cam, path, files, opts))
        d = ui.get_data(i)
        ui.ignore_id(i, None, None)
        ui.notice_id(i, opts.emin, opts.emax)
        if d.get_dep(filter=True).size == 0:
            raise UsageError(f"{cam}: no channels left in {opts.emin}-{opts.emax} keV", path)
        if i == 1:
            ui.set_source(i, model)
        else:
            c = cross[cam] = cross_normalisation(cam)
            ui.set_source(i, c * model)
        ids.append(i)
    register_energy_grids(comps, [response_edges(i) for i in ids])
    has_bkg = not opts.no_background and all(ui.get_data(i).background_ids for i in ids)
    stat = {"cstat": "wstat" if has_bkg else "cstat", "wstat": "wstat", "chi2": "chi2datavar"}[opts.stat]
    if stat == "wstat" and not has_bkg:
        raise UsageError("wstat needs background spectra")
    if stat == "chi2datavar" and has_bkg:
        for i in ids:
            ui.subtract(i)
    ui.set_stat(stat)
    check_model_not_zero(expr, comps)
    scale_start_norms(expr, comps, ids[0])
    minimise(ids)
    more_notes, undetected, without = freeze_undetected(expr, comps, ids)
    notes.extend(more_notes)
    fr = ui.get_fit_results()
    free = [p for p in all_pars(comps, cross) if not p.frozen]
    if fr.dof > 0 and fr.statval / fr.dof > 3:
        notes.append(f"poor fit: statistic/dof = {fr.statval / fr.dof:.1f}; the model does not describe "
                     "the data well and its intervals are not reliable")
        log.warning("fit: %s", notes[-1])
    from xmmext.fitting.goodness import expected_goodness
    expected = expected_goodness(ids, len(free))
    errs = _confidence(ids, free, undetected, opts.conf)
    goodness = _goodness(ids, free, undetected, opts) if opts.goodness else None
    params = {}
    for c in expr.components:
        for pname in c.parameter_names():
            par = getattr(comps[c.name], pname)
            params[f"{c.name}.{pname}"] = par_record(par, errs)
    for cam, c in cross.items():
        params[f"cross_norm.{cam}"] = par_record(c.c0, errs)
    values = {k: v["value"] for k, v in params.items()}
    cov_names, cov = _covariance(ids, free)
    fluxes = flux_table(expr, values, cov_names, cov, opts)
    result = {
        "engine": "sherpa", "model": expr.text, "model_xspec": expr.xspec_string(),
        "statistic": {"name": {"wstat": "cstat (W-stat: background not modelled)", "cstat": "cstat",
                               "chi2datavar": "chi2"}[stat], "sherpa_name": stat,
                      "value": float(fr.statval), "dof": int(fr.dof),
                      "reduced": float(fr.statval / fr.dof) if fr.dof > 0 else None},
        "parameters": params, "conf_level": opts.conf, "energy_range_keV": [opts.emin, opts.emax],
        "abund_table": opts.abund_table, "cross_sections": "vern", "background": not opts.no_background,
        "spectra": [{"camera": cam, "file": str(path)} for cam, path in spectra],
        "fluxes": fluxes, "notes": notes, "goodness_expected": expected,
        "undetected": [xspec_name(p) for p in undetected], "without_component": without,
    }
    if stat == "chi2datavar" and fr.dof > 0:
        from scipy.stats import chi2 as chi2_dist
        result["statistic"]["null_hypothesis_probability"] = float(chi2_dist.sf(fr.statval, fr.dof))
    if goodness is not None:
        result["goodness"] = goodness
    from xmmext.fitting.plots import folded_spectra
    result["folded_spectra"] = folded_spectra([label for label, _ in spectra])   # for fit.png, not fit.json
    return result


def _goodness(ids, free, undetected, opts) -> dict:
    """--goodness N: simulated goodness (undetected norms held at their best fit, as in
    the error searches)."""
    from xmmext.fitting.goodness import simulated_goodness
    with held_at_best_fit(undetected):
        return simulated_goodness(ids, [p for p in free if not p.frozen], opts.goodness, opts.seed)


def _confidence(ids, free, undetected, level: int) -> dict:
    """Profile-likelihood intervals (sherpa ``conf``) at ``level`` percent: {name: (lo, hi)}.

    The norm of an undetected component sits on its bound at zero; left free, every refit
    of a profile search would touch that bound (where LM stalls and each refit needs a
    simplex of hundreds of evaluations). So the other parameters' intervals are computed
    with those norms fixed at their best fit, and each such norm gets its own search (an
    upper limit) with everything else free.
    """
    import multiprocessing
    ui = sherpa_session()
    ui.set_method("levmar")
    ui.set_conf_opt("sigma", CONF_SIGMA[level])
    ui.set_conf_opt("soft_limits", True)     # stop a search at the parameter's soft limit
    # sherpa refuses error searches when statistic/dof > 3: a chi2 notion of a bad fit that
    # does not apply to C-stat; a poor fit still gets its intervals (and a note, see fit_sherpa)
    ui.set_conf_opt("max_rstat", float("inf"))
    # daemonic workers (dask) may not start the processes sherpa's parallel conf uses
    ui.set_conf_opt("parallel", not multiprocessing.current_process().daemon)
    errs = {}
    with held_at_best_fit(undetected):
        main = [p for p in free if not p.frozen]
        if main:
            ui.conf(*ids, *main)
            cr = ui.get_conf_results()
            errs.update({n: (lo, hi) for n, lo, hi in zip(cr.parnames, cr.parmins, cr.parmaxes)})
    for par in undetected:
        ui.conf(*ids, par)
        cr = ui.get_conf_results()
        errs[cr.parnames[0]] = (cr.parmins[0], cr.parmaxes[0])
    return errs


def _covariance(ids, free):
    ui = sherpa_session()
    try:
        ui.covar(*ids, *free)
        r = ui.get_covar_results()
        cov = np.asarray(r.extra_output, float)
        if cov.shape != (len(free), len(free)) or not np.all(np.isfinite(cov)):
            return [], None
        return [xspec_name(p) for p in free], cov
    except Exception as exc:          # covariance can fail at a limit; fluxes then have no errors
        log.warning("covariance matrix not available (%s): flux errors omitted", exc)
        return [], None


# --- fluxes ---------------------------------------------------------------------------------------
