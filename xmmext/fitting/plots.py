"""fit.png: folded spectra, model and residuals of every data set of the engine's session."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from xmmext.core.fileio import save_figure
from xmmext.fitting.session import sherpa_session


def plot_fit(dest: Path, n_spectra: int, labels: list[str]) -> None:
    """Folded spectra with model and residuals (from sherpa's current session)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ui = sherpa_session()
    # sherpa warns on every plot that W-stat does not use the displayed error bars: known
    sherpa_log = logging.getLogger("sherpa")
    level = sherpa_log.level
    sherpa_log.setLevel(logging.ERROR)
    try:
        _draw_fit(dest, n_spectra, labels, ui, plt)
    finally:
        sherpa_log.setLevel(level)


def _draw_fit(dest, n_spectra, labels, ui, plt) -> None:
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    model_min = np.inf
    any_subtracted = False
    for i in range(1, n_spectra + 1):
        color = f"C{i - 1}"
        # W-stat models only the source: show background-subtracted data against it
        subtracted = bool(ui.get_data(i).background_ids) and not ui.get_data(i).subtracted
        any_subtracted |= subtracted
        if subtracted:
            ui.subtract(i)
        dp, mp = ui.get_data_plot(i), ui.get_model_plot(i)
        x, y, ye = np.asarray(dp.x), np.asarray(dp.y), np.asarray(dp.yerr)
        xerr = np.asarray(dp.xerr) / 2 if dp.xerr is not None else None
        ax.errorbar(x, y, yerr=ye, xerr=xerr, fmt=".", ms=2, color=color, alpha=0.6, lw=0.6, label=labels[i - 1])
        xm_lo, xm_hi, ym = np.asarray(mp.xlo), np.asarray(mp.xhi), np.asarray(mp.y)
        ax.step(np.append(xm_lo, xm_hi[-1]), np.append(ym, ym[-1]), where="post", color=color, lw=1.2)
        if np.any(ym > 0):
            model_min = min(model_min, float(ym[ym > 0].min()))
        rp = ui.get_resid_plot(i)
        axr.errorbar(np.asarray(rp.x), np.asarray(rp.y) / np.maximum(ye, 1e-30), yerr=1.0, fmt=".", ms=2,
                     color=color, alpha=0.6, lw=0.5)
        if subtracted:
            ui.unsubtract(i)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if np.isfinite(model_min):
        ax.set_ylim(bottom=0.2 * model_min)      # near-empty subtracted bins would squash the plot
    ax.set_ylabel("counts / s / keV")
    ax.legend(fontsize=8)
    ax.set_title("Folded spectra (background subtracted) and best-fit model" if any_subtracted
                 else "Folded spectra and best-fit model (with the modelled background, if any)")
    axr.axhline(0, color="k", lw=0.8)
    axr.set_ylabel("(data-model)/error")
    axr.set_xlabel("energy (keV)")
    fig.tight_layout()
    save_figure(dest, fig)
    plt.close(fig)
