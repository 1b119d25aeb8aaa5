"""The sherpa fit: spectra loaded with sherpa's OGIP I/O (background and responses from
the header keywords), statistic cstat (W-stat with a background, as XSPEC) or chi2,
Levenberg-Marquardt, undetected components frozen, profile-likelihood errors (``conf``),
fluxes with errors. Everything happens in the engine's own sherpa session."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np

import xmmext.xspec.library as xm
from xmmext.core.errors import UsageError
from xmmext.xspec.expression import ABSORBERS, ModelExpression
from xmmext.fitting.fluxes import flux_table
from xmmext.fitting.inputs import check_spectrum
from xmmext.fitting.session import sherpa_session
from xmmext.fitting.sherpa_model import build_sherpa_model, register_energy_grids

log = logging.getLogger("xmmext.fitting")
CONF_SIGMA = {90: 1.6448536269514722, 68: 1.0, 95: 1.959963984540054, 99: 2.5758293035489004}


# -----------------------------------------------------------------------------
def fit_sherpa(spectra: list[tuple[str, Path]], expr: ModelExpression, opts) -> dict:
    """Joint fit with sherpa; returns the fit.json content (without file names)."""
    ui = sherpa_session()
    ui.clean()                                # the engine's own session (see .session)
    xm.set_abundances(opts.abund_table)
    xm.set_cross_sections("vern")
    model, comps = build_sherpa_model(expr)
    _apply_defaults(expr, comps, opts)
    ids = []
    cross = {}
    notes: list[str] = []
    for i, (cam, path) in enumerate(spectra, start=1):
        files = check_spectrum(cam, path, opts)
        notes.extend(_load_spectrum(ui, i, cam, path, files, opts))
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
    register_energy_grids(comps, [_response_edges(i) for i in ids])
    has_bkg = not opts.no_background and all(ui.get_data(i).background_ids for i in ids)
    stat = {"cstat": "wstat" if has_bkg else "cstat", "wstat": "wstat", "chi2": "chi2datavar"}[opts.stat]
    if stat == "wstat" and not has_bkg:
        raise UsageError("wstat needs background spectra")
    if stat == "chi2datavar" and has_bkg:
        for i in ids:
            ui.subtract(i)
    ui.set_stat(stat)
    _check_model_not_zero(expr, comps)
    _scale_start_norms(expr, comps, ids[0])
    _minimise(ids)
    more_notes, undetected, without = _freeze_undetected(expr, comps, ids)
    notes.extend(more_notes)
    fr = ui.get_fit_results()
    free = [p for p in _all_pars(comps, cross) if not p.frozen]
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
            params[f"{c.name}.{pname}"] = _par_record(par, errs)
    for cam, c in cross.items():
        params[f"cross_norm.{cam}"] = _par_record(c.c0, errs)
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
    return result


def cross_normalisation(cam: str):
    """A camera's normalisation relative to the first camera's, free in 0.2-5 (a Scale1D:
    not integrated over the bin, as const1d would be)."""
    from sherpa.models.basic import Scale1D
    c = Scale1D(f"cross_norm_{cam}")
    c.c0, c.c0.min, c.c0.max = 1.0, 0.2, 5.0
    return c


def _load_spectrum(ui, i: int, cam: str, path: Path, files: dict, opts) -> list[str]:
    """Load one spectrum with the responses and background resolved by :func:`resolve_files`;
    return notes on what was assumed (no background, ungrouped, non-integer background)."""
    import warnings
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ui.load_pha(i, str(path), use_errors=False)
    d = ui.get_data(i)
    for bid in list(d.background_ids):          # replaced below by the resolved background
        d.delete_background(bid)
    ui.load_rmf(i, str(files["RESPFILE"]))
    if files["ANCRFILE"] is not None:
        ui.load_arf(i, str(files["ANCRFILE"]))
        note = _match_arf_to_rmf(ui, i)
        if note:
            notes.append(f"{cam}: {note}")
    if files["BACKFILE"] is not None and not opts.no_background:
        ui.load_bkg(i, str(files["BACKFILE"]))
        b = ui.get_bkg(i)
        if np.any(np.abs(b.counts - np.round(b.counts)) > 1e-6):
            notes.append(f"{cam}: background counts are not integers (scaled background, e.g. filter-wheel "
                         "closed data); W-stat treats them as counts, as XSPEC does")
            log.warning("%s: non-integer background counts (W-stat applied as in XSPEC)", cam)
    elif not opts.no_background:
        notes.append(f"{cam}: BACKFILE is 'none': fitted without background")
    if d.quality is not None and np.any(d.quality != 0):
        ui.ignore_bad(i)
    if d.grouping is None:
        if opts.stat == "chi2":
            ui.group_counts(i, 25)
            notes.append(f"{cam}: ungrouped spectrum grouped to >= 25 counts for chi2")
        else:
            notes.append(f"{cam}: ungrouped spectrum fitted channel by channel ({opts.stat})")
    return notes


def _match_arf_to_rmf(ui, i: int) -> str | None:
    """An ARF on another energy grid than the RMF (e.g. this pipeline's ARF with a SAS RMF
    given by --rmf) is resampled onto the RMF's grid: effective area is smooth in energy,
    and fitting programs need one grid. Returns a note when it did so."""
    from sherpa.astro.data import DataARF
    rmf, arf = ui.get_rmf(i), ui.get_arf(i)
    if len(rmf.energ_lo) == len(arf.energ_lo) and np.allclose(rmf.energ_lo, arf.energ_lo, rtol=1e-5):
        return None
    mid = 0.5 * (np.asarray(arf.energ_lo) + np.asarray(arf.energ_hi))
    new_mid = 0.5 * (np.asarray(rmf.energ_lo) + np.asarray(rmf.energ_hi))
    area = np.interp(new_mid, mid, np.asarray(arf.specresp), left=0.0, right=0.0)
    ui.set_arf(i, DataARF(arf.name, np.asarray(rmf.energ_lo), np.asarray(rmf.energ_hi), area,
                          exposure=arf.exposure))
    return (f"ARF resampled from its {len(mid)}-bin energy grid onto the RMF's {len(new_mid)} bins "
            "(linear in energy)")


def _goodness(ids, free, undetected, opts) -> dict:
    """--goodness N: simulated goodness (undetected norms held at their best fit, as in
    the error searches)."""
    from xmmext.fitting.goodness import simulated_goodness
    with _held_at_best_fit(undetected):
        return simulated_goodness(ids, [p for p in free if not p.frozen], opts.goodness, opts.seed)


@contextmanager
def _held_at_best_fit(pars):
    """Freeze ``pars`` (undetected components' norms) for the duration of the block."""
    for par in pars:
        par.frozen = True
    try:
        yield
    finally:
        for par in pars:
            par.frozen = False


def _response_edges(data_id) -> np.ndarray:
    ui = sherpa_session()
    rmf = ui.get_rmf(data_id)
    return np.append(rmf.energ_lo, rmf.energ_hi[-1])


UNDETECTED_SHAPE = {"PhoIndex": 1.4, "kT": None}   # conventional index of a residual power law


def _scale_start_norms(expr, comps, data_id) -> None:
    """Scale the additive norms together so the starting model predicts the observed net
    counts of the first spectrum: the optimiser then starts near the answer."""
    ui = sherpa_session()
    d = ui.get_data(data_id)
    had_subtracted = d.subtracted
    if d.background_ids and not had_subtracted:
        ui.subtract(data_id)
    net = float(np.sum(d.get_dep(filter=True)))
    if d.background_ids and not had_subtracted:
        ui.unsubtract(data_id)
    model = float(ui.calc_model_sum(None, None, data_id))
    if net > 0 and model > 0:
        for c in expr.components:
            norm = comps[c.name].norm if c.kind == "add" else None
            if norm is not None and not norm.frozen:
                norm.val = float(np.clip(norm.val * net / model, norm.min, norm.max))


def _minimise(ids) -> None:
    """Levenberg-Marquardt twice: the second pass, started from the first optimum, settles
    slow directions. (sherpa's LM finishes with a simplex when a parameter ends on a bound.)"""
    ui = sherpa_session()
    ui.set_method("levmar")
    ui.fit(*ids)
    ui.fit(*ids)


def _freeze_undetected(expr, comps, ids) -> tuple[list[str], list, dict]:
    """A component whose removal (norm fixed at 0, the rest refitted) raises the statistic
    by less than 1 (i.e. it is not detected at 1 sigma) cannot constrain its shape: freeze
    the shape (power-law index at 1.4, others at their best fit) and refit. Returns the
    notes, the norms of those components (their intervals are upper limits), and for each
    component the fit without it ({name: {"delta_stat", "values"}}: what depends on it).

    A likelihood-ratio test rather than the covariance: with a norm near its bound at zero
    the numerical Hessian is often not positive definite. When the fit without the component
    is better than the fit with it (the optimiser had stopped in a valley where the two
    share the spectrum: on A907 a hard power law and a 2.7 keV continuum matched a 5.8 keV
    continuum alone), the fit without it is kept as the starting point."""
    ui = sherpa_session()
    notes, undetected, without_fits = [], [], {}
    adds = [c for c in expr.components if c.kind == "add"]
    if len(adds) < 2:
        return notes, undetected, without_fits
    pars = [p for p in _all_pars(comps, {}) if not p.frozen]
    best = [p.val for p in pars]
    stat_best = ui.calc_stat(*ids)
    for c in adds:
        obj = comps[c.name]
        shape = [getattr(obj, p.name) for p in c.definition.params if not getattr(obj, p.name).frozen]
        if not shape or obj.norm.frozen:
            continue
        obj.norm.val, obj.norm.frozen = 0.0, True
        try:
            ui.fit(*ids)
            without = ui.calc_stat(*ids)
            delta = without - stat_best
            without_fits[c.name] = {"delta_stat": float(delta),
                                    "values": {xspec_name(p): float(p.val) for p in pars if p is not obj.norm}}
        finally:
            obj.norm.frozen = False
            if delta < 0:                  # a better optimum without it: start from there
                best, stat_best = [p.val for p in pars], without
            for p, v in zip(pars, best):
                p.val = v
        if delta < 1.0:
            for par in shape:
                fixed = UNDETECTED_SHAPE.get(par.name)
                if fixed is not None:
                    par.val = fixed
                par.frozen = True
            undetected.append(obj.norm)
            notes.append(f"{c.name} not detected (statistic rises by {delta:.2f} < 1 without it): "
                         f"{', '.join(p.name + '=' + format(p.val, '.3g') for p in shape)} frozen; "
                         "its norm interval is an upper limit; the other intervals are computed "
                         "with this norm fixed at its best fit")
            log.warning("fit: %s", notes[-1])
    # refit from the best values: the last fit was one without a component, and the fit
    # results (statistic, dof) must be the full model's
    _minimise(ids)
    return notes, undetected, without_fits


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
    with _held_at_best_fit(undetected):
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


def _all_pars(comps, cross):
    out = []
    for c in comps.values():
        out.extend(c.pars)
    out.extend(c.c0 for c in cross.values())
    return out


def _par_record(par, errs):
    lo, hi = errs.get(par.fullname, (None, None))
    return {"value": float(par.val),
            "lower": None if par.frozen or lo is None else float(par.val + lo),
            "upper": None if par.frozen or hi is None else float(par.val + hi),
            "frozen": bool(par.frozen), "unit": par.units or "", "limits": [float(par.min), float(par.max)]}


def xspec_name(par) -> str:
    """'<component>.<par>' as fit.json names it (a cross-normalisation: 'cross_norm.<cam>')."""
    comp, pname = par.fullname.split(".", 1)
    return f"cross_norm.{comp[len('cross_norm_'):]}" if comp.startswith("cross_norm_") else f"{comp}.{pname}"


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


def _apply_defaults(expr: ModelExpression, comps, opts) -> None:
    """Extended-source defaults: nH frozen at --nh, redshift frozen, kT/abundance/norms free."""
    for c in expr.components:
        obj = comps[c.name]
        low = c.xspec_name.lower()
        for pname in c.parameter_names():
            par = getattr(obj, pname)
            if pname.lower() == "nh" and low in ABSORBERS:
                if opts.nh is not None:
                    par.val = opts.nh
                par.frozen = opts.nh is not None and not opts.nh_free
            elif pname.lower() == "redshift":
                if opts.redshift is not None:
                    par.val = opts.redshift
                par.frozen = True
            elif pname.lower().startswith("abundanc"):
                par.frozen = False
            elif pname == "norm":
                par.val = 1e-3 if low not in ("powerlaw", "bbodyrad") else (1e-4 if low == "powerlaw" else 1.0)
            elif pname == "kT" and low in ("apec", "bremss", "zbremss", "mekal", "vapec"):
                par.val = 3.0
            elif pname == "kT" and low == "bbodyrad":
                par.val = 1.0
            elif pname == "PhoIndex":
                par.val = 2.0
    known = {f"{c.name}.{p}".lower(): (c.name, p) for c in expr.components for p in c.parameter_names()}
    for name, val in opts.set_values.items():
        key = name.lower()
        if key not in known:
            raise UsageError(f"--set: no parameter {name!r}; the model has {', '.join(expr.parameters())}")
        cname, pname = known[key]
        par = getattr(comps[cname], pname)
        if not (par.hard_min <= val <= par.hard_max):
            raise UsageError(f"--set {name}={val} is outside the hard limits [{par.hard_min}, {par.hard_max}]")
        par.val = val
    for name in opts.freeze:
        key = name.lower()
        if key not in known:
            raise UsageError(f"--freeze: no parameter {name!r}; the model has {', '.join(expr.parameters())}")
        cname, pname = known[key]
        getattr(comps[cname], pname).frozen = True


def _check_model_not_zero(expr, comps) -> None:
    """Evaluate each additive component once: zeros mean missing data files (DependencyError)."""
    e = np.linspace(0.3, 10.0, 50)
    for c in expr.components:
        if c.kind == "add":
            obj = comps[c.name]
            vals = [getattr(obj, p).val for p in c.parameter_names()[:-1]]
            xm.evaluate(c.xspec_name, vals, e)     # raises with the missing-file message


# --- fluxes ---------------------------------------------------------------------------------------
