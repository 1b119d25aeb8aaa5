"""What the sherpa fits share (the plain fit, the modelled background, the profile's
cross-talk fit): spectra loaded with their background and responses from the header
keywords, the model's starting values and checks, the cross-normalisations, undetected
components frozen, parameter records as fit.json writes them. Everything happens in the
engine's own sherpa session, never the user's."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np

import xmmext.xspec.library as xm
from xmmext.core.errors import UsageError
from xmmext.xspec.expression import ABSORBERS, ModelExpression
from xmmext.fitting.session import sherpa_session

__all__ = ["CONF_SIGMA", "UNDETECTED_SHAPE", "cross_normalisation", "load_spectrum", "held_at_best_fit",
           "response_edges", "scale_start_norms", "minimise", "freeze_undetected", "all_pars", "par_record",
           "xspec_name", "apply_defaults", "check_model_not_zero"]
log = logging.getLogger("xmmext.fitting")

CONF_SIGMA = {90: 1.6448536269514722, 68: 1.0, 95: 1.959963984540054, 99: 2.5758293035489004}

def cross_normalisation(cam: str):
    """A camera's normalisation relative to the first camera's, free in 0.2-5 (a Scale1D:
    not integrated over the bin, as const1d would be)."""
    from sherpa.models.basic import Scale1D
    c = Scale1D(f"cross_norm_{cam}")
    c.c0, c.c0.min, c.c0.max = 1.0, 0.2, 5.0
    return c

def load_spectrum(ui, i: int, cam: str, path: Path, files: dict, opts) -> list[str]:
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
        note = match_arf_to_rmf(ui, i)
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

def match_arf_to_rmf(ui, i: int) -> str | None:
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

@contextmanager
def held_at_best_fit(pars):
    """Freeze ``pars`` (undetected components' norms) for the duration of the block."""
    for par in pars:
        par.frozen = True
    try:
        yield
    finally:
        for par in pars:
            par.frozen = False

def response_edges(data_id) -> np.ndarray:
    ui = sherpa_session()
    rmf = ui.get_rmf(data_id)
    return np.append(rmf.energ_lo, rmf.energ_hi[-1])

UNDETECTED_SHAPE = {"PhoIndex": 1.4, "kT": None}   # conventional index of a residual power law

def scale_start_norms(expr, comps, data_id) -> None:
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

def minimise(ids) -> None:
    """Levenberg-Marquardt twice: the second pass, started from the first optimum, settles
    slow directions. (sherpa's LM finishes with a simplex when a parameter ends on a bound.)"""
    ui = sherpa_session()
    ui.set_method("levmar")
    ui.fit(*ids)
    ui.fit(*ids)

def freeze_undetected(expr, comps, ids) -> tuple[list[str], list, dict]:
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
    pars = [p for p in all_pars(comps, {}) if not p.frozen]
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
    minimise(ids)
    return notes, undetected, without_fits

def all_pars(comps, cross):
    out = []
    for c in comps.values():
        out.extend(c.pars)
    out.extend(c.c0 for c in cross.values())
    return out

def par_record(par, errs):
    lo, hi = errs.get(par.fullname, (None, None))
    return {"value": float(par.val),
            "lower": None if par.frozen or lo is None else float(par.val + lo),
            "upper": None if par.frozen or hi is None else float(par.val + hi),
            "frozen": bool(par.frozen), "unit": par.units or "", "limits": [float(par.min), float(par.max)]}

def xspec_name(par) -> str:
    """'<component>.<par>' as fit.json names it (a cross-normalisation: 'cross_norm.<cam>')."""
    comp, pname = par.fullname.split(".", 1)
    return f"cross_norm.{comp[len('cross_norm_'):]}" if comp.startswith("cross_norm_") else f"{comp}.{pname}"

def apply_defaults(expr: ModelExpression, comps, opts) -> None:
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

def check_model_not_zero(expr, comps) -> None:
    """Evaluate each additive component once: zeros mean missing data files (DependencyError)."""
    e = np.linspace(0.3, 10.0, 50)
    for c in expr.components:
        if c.kind == "add":
            obj = comps[c.name]
            vals = [getattr(obj, p).val for p in c.parameter_names()[:-1]]
            xm.evaluate(c.xspec_name, vals, e)     # raises with the missing-file message
