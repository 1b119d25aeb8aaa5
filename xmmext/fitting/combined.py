"""Fits of many observations taken together: every observation's fit.json in one table
(with units) with inverse-variance means and a chi2 consistency test, and one joint fit of
all their spectra. The steps that run them: :mod:`xmmext.steps.combine`."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from xmmext.core.errors import UsageError
from xmmext.core.fileio import read_json, save_figure, write_text
from xmmext.core.paths import ObsPaths, multi_dir

__all__ = ["weighted_mean", "combine_fits", "joint_spectra", "joint_fit"]


def weighted_mean(values, lower, upper) -> dict:
    """Inverse-variance mean of values with (asymmetric) intervals, and a chi2 consistency test.

    Each interval is turned into a Gaussian sigma = (upper - lower) / (2 z) with z the
    confidence level's normal quantile (the intervals are passed already divided by z)."""
    from scipy import stats
    v = np.asarray(values, float)
    s = (np.asarray(upper, float) - np.asarray(lower, float)) / 2.0
    ok = np.isfinite(v) & np.isfinite(s) & (s > 0)
    v, s = v[ok], s[ok]
    if len(v) == 0:
        return {"mean": None, "error": None, "chi2": None, "dof": 0, "p_value": None, "n": 0}
    w = 1.0 / s ** 2
    mean = float(np.sum(w * v) / np.sum(w))
    err = float(1.0 / math.sqrt(np.sum(w)))
    chi2 = float(np.sum(((v - mean) / s) ** 2))
    dof = len(v) - 1
    p = float(stats.chi2.sf(chi2, dof)) if dof > 0 else None
    return {"mean": mean, "error": err, "chi2": chi2, "dof": dof, "p_value": p, "n": int(len(v))}


def combine_fits(obsids: list[str], name: str, workdir=None) -> tuple[dict, list[Path]]:
    """Table of every observation's fit, weighted means, plots (results/multi/<name>/);
    returns the content of summary.json and the files written."""
    from astropy.table import Table
    from xmmext.fitting.sherpa_setup import CONF_SIGMA
    out = multi_dir(name, workdir)
    rows, params = [], []
    for o in obsids:
        f = ObsPaths.of(o, workdir).fit / "fit.json"
        if not f.exists():
            continue
        fit = read_json(f, "fit.json")
        row = {"obsid": o, "model": fit["model"], "engine": fit["engine"], "stat": fit["statistic"]["value"],
               "dof": fit["statistic"]["dof"], "conf_level": fit["conf_level"],
               "n_flags": len(fit.get("flags", [])), "flags": "; ".join(fit.get("flags", []))}
        for pname, p in fit["parameters"].items():
            if p["frozen"]:
                continue
            if pname not in params:
                params.append(pname)
            row[pname] = p["value"]
            row[pname + "_lo"] = np.nan if p["lower"] is None else p["lower"]
            row[pname + "_hi"] = np.nan if p["upper"] is None else p["upper"]
            row[pname + "_unit"] = p["unit"]
        rows.append(row)
    if not rows:
        raise UsageError("no observation of the list has a fit (run them first, or --run-missing)", out)
    cols = ["obsid", "model", "engine", "stat", "dof", "conf_level"] + \
        [c for p in params for c in (p, p + "_lo", p + "_hi")] + ["n_flags", "flags"]
    table = Table(rows=[[r.get(c, np.nan) for c in cols] for r in rows], names=cols)
    for p in params:
        unit = next((r.get(p + "_unit") for r in rows if r.get(p + "_unit")), "")
        if unit:
            for c in (p, p + "_lo", p + "_hi"):
                try:
                    table[c].unit = unit
                except ValueError:
                    pass
    out.mkdir(parents=True, exist_ok=True)
    from xmmext.core.fileio import atomic_path
    with atomic_path(out / "table.csv") as tmp:
        table.write(tmp, format="ascii.csv", overwrite=True)
    with atomic_path(out / "table.ecsv") as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
    z = {r["conf_level"] for r in rows}
    zq = CONF_SIGMA[z.pop()] if len(z) == 1 else 1.0
    means = {}
    for p in params:
        v = np.array([r.get(p, np.nan) for r in rows], float)
        lo = np.array([r.get(p + "_lo", np.nan) for r in rows], float)
        hi = np.array([r.get(p + "_hi", np.nan) for r in rows], float)
        means[p] = weighted_mean(v, v - (v - lo) / zq, v + (hi - v) / zq)   # 1-sigma intervals
    summary = {"name": name, "observations": [r["obsid"] for r in rows], "n": len(rows),
               "weighted_means_1sigma": means, "files": ["table.csv", "table.ecsv", "parameters.png"],
               "flagged": {r["obsid"]: r["flags"].split("; ") for r in rows if r["n_flags"]}}
    _plot(rows, params, means, out / "parameters.png")
    return summary, [out / f for f in summary["files"]]


def _plot(rows, params, means, dest):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(params)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.9 * n + 0.8), sharex=True, squeeze=False)
    x = np.arange(len(rows))
    for ax, p in zip(axes[:, 0], params):
        v = np.array([r.get(p, np.nan) for r in rows], float)
        lo = np.array([r.get(p + "_lo", np.nan) for r in rows], float)
        hi = np.array([r.get(p + "_hi", np.nan) for r in rows], float)
        ax.errorbar(x, v, yerr=[np.nan_to_num(v - lo), np.nan_to_num(hi - v)], fmt="o", ms=4)
        m = means[p]
        if m["mean"] is not None:
            ax.axhline(m["mean"], color="C3", lw=1)
            ax.axhspan(m["mean"] - m["error"], m["mean"] + m["error"], color="C3", alpha=0.2)
            ptxt = "" if m["p_value"] is None else f", chi2 {m['chi2']:.1f}/{m['dof']} (p={m['p_value']:.2f})"
            ax.set_title(f"{p}: weighted mean {m['mean']:.4g} +- {m['error']:.2g}{ptxt}", fontsize=8, loc="left")
        ax.set_ylabel(p, fontsize=8)
    axes[-1, 0].set_xticks(x)
    axes[-1, 0].set_xticklabels([r["obsid"] for r in rows], rotation=30, fontsize=7)
    fig.tight_layout()
    save_figure(dest, fig)
    plt.close(fig)


def joint_spectra(obsids: list[str], workdir, fit_opts) -> list[tuple[str, Path, dict]]:
    """(label, spectrum, the files its header names) of every observation's spectra."""
    from xmmext.fitting.inputs import check_spectrum, find_spectra
    out = []
    for o in obsids:
        for cam, path in find_spectra(ObsPaths.of(o, workdir).spectra, fit_opts.cameras):
            out.append((f"{o}_{cam}", path, check_spectrum(cam, path, fit_opts)))
    return out


def joint_fit(obsids: list[str], name: str, workdir, fit_opts) -> tuple[dict, list[Path]]:
    """One fit of every observation's spectra: shared physical parameters, a free
    cross-normalisation per spectrum after the first (results/multi/<name>/joint/);
    returns the content of fit.json and the other files written."""
    from xmmext.fitting.inputs import model_for_fit
    from xmmext.fitting.plots import plot_fit
    from xmmext.fitting.sherpa_engine import fit_sherpa
    from xmmext.fitting.writers import csv_text, xcm_text
    fit_opts.validate()
    spectra = [(label, path) for label, path, _ in joint_spectra(obsids, workdir, fit_opts)]
    expr = model_for_fit(fit_opts.model)
    result = fit_sherpa(spectra, expr, fit_opts)
    result["joint_observations"] = obsids
    out = multi_dir(name, workdir) / "joint"
    written = [write_text(out / "fit.csv", csv_text(result)),
               write_text(out / "fit.xcm", xcm_text(result, expr, fit_opts, out))]
    plot_fit(out / "fit.png", result.pop("folded_spectra"))
    return result, written + [out / "fit.png"]
