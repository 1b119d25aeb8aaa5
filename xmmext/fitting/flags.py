"""Flags: what makes a fitted number doubtful, in short sentences a user cannot miss.

Computed from a fit's result (the content of fit.json, whichever engine made it) and
written into it as ``flags``: an empty list when nothing is doubtful. Each flag starts
with a short code (``at-limit``, ``open-interval``, ``wide-interval``, ``poor-fit``,
``goodness``, ``kT-unmeasurable``, ``soft-protons``, ...) followed by what was found.
The terminal summary, fit.json, profile.json, the multi table and report.html show them.
"""
from __future__ import annotations

import math

__all__ = ["REDUCED_STAT_LIMIT", "GOODNESS_P_LIMIT", "LIMIT_TOLERANCE", "SHAPE_PARAMETERS", "fit_flags",
           "goodness_p", "FIT_LEVEL", "row_flags", "summary_line"]

REDUCED_STAT_LIMIT = 1.5          # statistic / dof above this: the model does not describe the data
GOODNESS_P_LIMIT = 0.01
LIMIT_TOLERANCE = 1e-2            # a parameter within this share of its interval from a limit is at it
SHAPE_PARAMETERS = ("kt", "abundanc", "phoindex", "nh", "redshift", "sigma", "linee", "gamma")


def fit_flags(result: dict, undetected: tuple[str, ...] = ()) -> list[str]:
    """Flags of one fit result (fit.json content). ``undetected``: the norms of components
    the fit found absent (reported as upper limits in its notes, not flagged again)."""
    flags: list[str] = []
    emin, emax = result.get("energy_range_keV", (None, None))
    for name, p in result.get("parameters", {}).items():
        if p.get("frozen") or name in undetected:
            continue
        flags += _parameter_flags(name, p, emin, emax)
    flags += _model_dependence(result)
    flags += _soft_protons(result)
    st = result.get("statistic") or {}
    if st.get("value") is None or not math.isfinite(float(st["value"])):
        flags.append("no-statistic: the fit gave no statistic")
    elif st.get("dof") and st["dof"] > 0 and st["value"] / st["dof"] > REDUCED_STAT_LIMIT:
        flags.append(f"poor-fit: statistic/dof = {st['value']:.0f}/{st['dof']} = {st['value'] / st['dof']:.2f} "
                     f"> {REDUCED_STAT_LIMIT}")
    p_value, how = goodness_p(result)
    if p_value is not None and p_value < GOODNESS_P_LIMIT:
        flags.append(f"goodness: p = {p_value:.2g} < {GOODNESS_P_LIMIT} ({how}): the model is rejected")
    return flags


def _soft_protons(result: dict) -> list[str]:
    """Residual soft protons that step 1 measured in a camera, and whether the fit modelled them."""
    out = []
    used = (result.get("background_choice") or {}).get("used", result.get("background"))
    for cam, m in (result.get("soft_protons") or {}).items():
        if m and m.get("significant"):
            handled = ("modelled (a power law with its own vignetting, fitted with the source)" if used == "model"
                       else "NOT modelled: with --background local they are subtracted as sky (kT biased low)")
            out.append(f"soft-protons: {cam} {m.get('level', '')} (ratio {m['ratio']:.2f} +- "
                       f"{m['ratio_error']:.2f}); {handled}")
    return out


def _model_dependence(result: dict) -> list[str]:
    """A temperature that moves outside its interval when another component (e.g. the power
    law) is left out: the two share the spectrum, and the number depends on the model."""
    out = []
    pars = result.get("parameters", {})
    for comp, w in (result.get("without_component") or {}).items():
        for name, v in w.get("values", {}).items():
            p = pars.get(name)
            if (not p or not name.endswith(".kT") or name.split(".")[0] == comp or p.get("lower") is None
                    or p.get("upper") is None):
                continue
            if not p["lower"] <= v <= p["upper"]:
                out.append(f"model-dependent: {name} = {p['value']:.3g} ({p['lower']:.3g}-{p['upper']:.3g}) with "
                           f"{comp}, {v:.3g} without it (statistic {w['delta_stat']:+.1f})")
    return out


def goodness_p(result: dict) -> tuple[float | None, str]:
    """The goodness p-value of a fit and where it comes from (simulations when run, else the
    expected statistic, else chi2's null-hypothesis probability)."""
    g = result.get("goodness") or {}
    if g.get("n_simulations"):
        return g.get("p_value"), f"{g['n_simulations']} refitted simulations"
    e = result.get("goodness_expected") or {}
    if e.get("p_value") is not None and math.isfinite(e["p_value"]):
        return e["p_value"], f"expected statistic {e['expected']:.0f} +- {e['sigma']:.0f}"
    p = (result.get("statistic") or {}).get("null_hypothesis_probability")
    return p, "chi2"


def _parameter_flags(name: str, p: dict, emin, emax) -> list[str]:
    out = []
    value, lo, hi = p.get("value"), p.get("lower"), p.get("upper")
    short = name.split(".", 1)[-1].lower()
    limits = p.get("limits")
    if value is None or not math.isfinite(float(value)):
        return [f"no-value: {name} was not measured"]
    if limits and _at_limit(value, limits, lo, hi):
        side = "lower" if abs(value - limits[0]) <= abs(limits[1] - value) else "upper"
        out.append(f"at-limit: {name} = {value:.4g} at its {side} limit {limits[0 if side == 'lower' else 1]:.4g}")
    if lo is None or hi is None:
        out.append(f"open-interval: {name}: no {'lower' if lo is None else 'upper'} bound found within its limits")
    elif short in SHAPE_PARAMETERS + ("norm",) and not name.startswith("cross_norm") and hi - lo > abs(value):
        out.append(f"wide-interval: {name} = {value:.3g} ({lo:.3g}-{hi:.3g}): the interval is wider than the value")
    if short == "kt" and emin is not None and emax is not None and (value > 2.0 * emax or value < 0.5 * emin):
        out.append(f"kT-unmeasurable: {name} = {value:.3g} keV, outside what a {emin:g}-{emax:g} keV spectrum "
                   f"measures ({0.5 * emin:g}-{2.0 * emax:g} keV)")
    return out


def _at_limit(value: float, limits, lower, upper) -> bool:
    """Within a hundredth of the parameter's own interval (or, without one, a millionth of
    its size) of a limit: the optimiser stopped there."""
    scale = (upper - lower) if lower is not None and upper is not None and upper > lower else 0.0
    tol = max(LIMIT_TOLERANCE * scale, 1e-6 * max(abs(value), abs(limits[0]), abs(limits[1]) * 1e-6), 1e-300)
    return min(abs(value - limits[0]), abs(limits[1] - value)) <= tol


FIT_LEVEL = ("poor-fit", "goodness", "no-statistic", "soft-protons", "model-dependent")


def row_flags(row: dict, fit: dict, parameters: tuple[tuple[str, str], ...]) -> list[str]:
    """Flags of one annulus of a profile: its own fit's statistic-level flags and the
    parameter flags of the row's final values (the cross-talk fit's, when it replaced the
    annulus's own). ``parameters``: (row key, parameter name) pairs, e.g. ("kT", "kT")."""
    flags = [f for f in fit.get("flags", []) if f.split(":")[0] in FIT_LEVEL]
    pars = fit.get("parameters", {})
    thermal = next((k.split(".")[0] for k in pars if k.endswith(".kT")), None)
    emin, emax = fit.get("energy_range_keV", (None, None))
    for key, par in parameters:
        name = f"{thermal}.{par}"
        if key in row and name in pars:
            record = {**row[key], "frozen": False, "limits": pars[name].get("limits")}
            flags += _parameter_flags(name, record, emin, emax)
    return flags


def summary_line(flags: list[str]) -> str:
    """One line for the terminal: 'flags: none' or the codes, the full text being in fit.json."""
    if not flags:
        return "flags: none"
    return "FLAGS: " + "; ".join(flags)
