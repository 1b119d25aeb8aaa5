"""fit.png: folded spectra, model and residuals, drawn from arrays the engine takes from its
session right after the fit (the figure never reads a sherpa session itself)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from xmmext.core.fileio import save_figure
from xmmext.fitting.session import sherpa_session

__all__ = ["folded_spectra", "plot_fit"]


def folded_spectra(labels: list[str]) -> list[dict]:
    """What fit.png shows of data sets 1..N of the engine's session, as plain arrays (taken
    by the engine right after its fit, so that the plot is drawn from the result):
    data (background-subtracted when W-stat leaves the background unmodelled), model and
    residuals in units of the error."""
    ui = sherpa_session()
    # sherpa warns on every plot that W-stat does not use the displayed error bars: known
    sherpa_log = logging.getLogger("sherpa")
    level = sherpa_log.level
    sherpa_log.setLevel(logging.ERROR)
    try:
        return [_folded(ui, i, label) for i, label in enumerate(labels, start=1)]
    finally:
        sherpa_log.setLevel(level)


def _folded(ui, i: int, label: str) -> dict:
    subtracted = bool(ui.get_data(i).background_ids) and not ui.get_data(i).subtracted
    if subtracted:
        ui.subtract(i)
    try:
        dp, mp, rp = ui.get_data_plot(i), ui.get_model_plot(i), ui.get_resid_plot(i)
        ye = np.asarray(dp.yerr, float)
        return {"label": label, "subtracted": subtracted, "x": np.asarray(dp.x, float),
                "y": np.asarray(dp.y, float), "yerr": ye,
                "xerr": None if dp.xerr is None else np.asarray(dp.xerr, float) / 2,
                "model_edges": np.append(np.asarray(mp.xlo, float), np.asarray(mp.xhi, float)[-1]),
                "model": np.asarray(mp.y, float), "resid_x": np.asarray(rp.x, float),
                "resid_sigma": np.asarray(rp.y, float) / np.maximum(ye, 1e-30)}
    finally:
        if subtracted:
            ui.unsubtract(i)


def plot_fit(dest: Path, spectra: list[dict]) -> None:
    """fit.png from :func:`folded_spectra`'s arrays: folded spectra with model, residuals."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    model_min = np.inf
    for k, s in enumerate(spectra):
        color = f"C{k}"
        ax.errorbar(s["x"], s["y"], yerr=s["yerr"], xerr=s["xerr"], fmt=".", ms=2, color=color, alpha=0.6, lw=0.6,
                    label=s["label"])
        ym = s["model"]
        ax.step(s["model_edges"], np.append(ym, ym[-1]), where="post", color=color, lw=1.2)
        if np.any(ym > 0):
            model_min = min(model_min, float(ym[ym > 0].min()))
        axr.errorbar(s["resid_x"], s["resid_sigma"], yerr=1.0, fmt=".", ms=2, color=color, alpha=0.6, lw=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if np.isfinite(model_min):
        ax.set_ylim(bottom=0.2 * model_min)      # near-empty subtracted bins would squash the plot
    ax.set_ylabel("counts / s / keV")
    ax.legend(fontsize=8)
    ax.set_title("Folded spectra (background subtracted) and best-fit model" if any(s["subtracted"] for s in spectra)
                 else "Folded spectra and best-fit model (with the modelled background, if any)")
    axr.axhline(0, color="k", lw=0.8)
    axr.set_ylabel("(data-model)/error")
    axr.set_xlabel("energy (keV)")
    fig.tight_layout()
    save_figure(dest, fig)
    plt.close(fig)
