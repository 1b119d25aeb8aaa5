"""Simulated goodness of fit for Poisson statistics (``xspec_analysis.py --goodness N``).

The C-statistic of a good fit is not ~dof, so its value alone says little; XSPEC's
``goodness`` answers with simulations. Here: N parametric-bootstrap realisations of every
spectrum from the best-fit model of the current sherpa session, each refitted from the
best fit, and the observed statistic placed in their distribution.

* source counts per channel ~ Poisson(folded best-fit model + background scale x the
  observed background counts); background counts ~ Poisson(observed background counts)
  (the measured background is taken as its own expectation, as XSPEC's fakeit does with
  a background file);
* every realisation is refitted (Levenberg-Marquardt from the best fit, the same free
  parameters): the observed statistic is a minimum, so unfitted simulations would be
  biased high;
* reported as XSPEC does (percentage of realisations with a statistic below the data's:
  ~50% for a good model, near 100% for a bad one) and as a p-value (fraction at or
  above).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("xmmext.goodness")


def simulated_goodness(ids, free_pars, n: int, seed: int) -> dict:
    """Goodness of the current sherpa fit of data sets ``ids`` from ``n`` refitted
    simulations; the session (counts, parameter values) is restored afterwards."""
    from .session import sherpa_session
    ui = sherpa_session()
    from sherpa.utils.err import FitErr
    rng = np.random.default_rng(seed)
    observed = float(ui.calc_stat(*ids))
    best = [p.val for p in free_pars]
    saved, expected = {}, {}
    for i in ids:
        d = ui.get_data(i)
        bkgs = {b: d.get_background(b) for b in d.background_ids}
        saved[i] = (d.counts.copy(), {b: bk.counts.copy() for b, bk in bkgs.items()})
        mu = np.asarray(d.eval_model(ui.get_model(i)), float)       # folded source, all channels
        for b, bk in bkgs.items():
            scale = np.broadcast_to(d.get_background_scale(b, units="counts", group=False), mu.shape)
            mu = mu + scale * np.asarray(bk.counts, float) / len(bkgs)
        expected[i] = np.clip(mu, 0.0, None)
    ui.set_method("levmar")
    stats, failed = [], 0
    try:
        for _ in range(n):
            for i in ids:
                d = ui.get_data(i)
                d.counts = rng.poisson(expected[i]).astype(saved[i][0].dtype)
                for b, counts in saved[i][1].items():
                    d.get_background(b).counts = rng.poisson(np.clip(counts, 0, None)).astype(counts.dtype)
            for p, v in zip(free_pars, best):
                p.val = v
            try:
                ui.fit(*ids)
                stats.append(float(ui.calc_stat(*ids)))
            except FitErr as exc:            # a realisation the optimiser cannot handle
                failed += 1
                log.debug("goodness: simulation fit failed: %s", exc)
    finally:
        for i in ids:
            d = ui.get_data(i)
            d.counts = saved[i][0]
            for b, counts in saved[i][1].items():
                d.get_background(b).counts = counts
        for p, v in zip(free_pars, best):
            p.val = v
    sims = np.array(stats)
    if sims.size == 0:
        return {"n_simulations": 0, "n_failed": failed, "observed": observed}
    return {"method": "parametric bootstrap from the best fit, each realisation refitted",
            "n_simulations": int(sims.size), "n_failed": failed, "observed": observed,
            "percent_below_observed": float(100.0 * np.mean(sims < observed)),
            "p_value": float(np.mean(sims >= observed)),
            "simulated_median": float(np.median(sims)),
            "simulated_16_84": [float(np.percentile(sims, 16)), float(np.percentile(sims, 84))]}
