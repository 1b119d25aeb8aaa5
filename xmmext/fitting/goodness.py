"""Goodness of fit for Poisson statistics: the expected statistic (always, it costs
milliseconds) and simulations (``xspec_analysis.py --goodness N``).

Expected statistic (Kaastra 2017, A&A 605, A51, for C; the same idea for W-stat): for
each group, the mean and variance of the statistic when the counts are Poisson
realisations of the best fit (source model + profiled background), by summing over the
counts' Poisson distribution (chi2 with one degree of freedom per group where the counts
are large); the observed statistic against the sum, less the number of free parameters,
gives z and a one-sided p-value. No refits: an approximation the simulations check.

Simulations:

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
from scipy import stats

__all__ = ["LARGE_COUNTS", "SPAN_SIGMA", "wstat_terms", "profiled_background", "cstat_terms", "expected_terms",
           "expected_goodness", "simulated_goodness"]

log = logging.getLogger("xmmext.goodness")
LARGE_COUNTS = 60.0            # expected counts above which a group's statistic is chi2(1)
SPAN_SIGMA = 8.0               # Poisson sums cover the mean +- this many sigma


def _xlogx(x):
    x = np.asarray(x, float)
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def wstat_terms(s, b, model, kappa) -> np.ndarray:
    """W-stat of each group (XSPEC's and sherpa's wstat): ``s``, ``b`` source and background
    counts, ``model`` the source model's counts, ``kappa`` background region / source region
    (exposure x BACKSCAL); the background profiled out."""
    a = 1.0 + kappa
    c = a * model - s - b
    bs = (-c + np.sqrt(c * c + 4.0 * a * b * model)) / (2.0 * a)
    log_src = np.where(s > 0, s * np.log(np.maximum(model + bs, 1e-300)), 0.0)
    log_bkg = np.where(b > 0, b * np.log(np.maximum(kappa * bs, 1e-300)), 0.0)
    return 2.0 * (model + a * bs - log_src - log_bkg + _xlogx(s) - s + _xlogx(b) - b)


def profiled_background(s, b, model, kappa) -> np.ndarray:
    """The background counts in the source region that W-stat's profile finds."""
    a = 1.0 + kappa
    c = a * model - s - b
    return (-c + np.sqrt(c * c + 4.0 * a * b * model)) / (2.0 * a)


def cstat_terms(s, model) -> np.ndarray:
    """Cash's C of each group, as XSPEC's cstat (the 'deviance' form)."""
    return 2.0 * (model - s + _xlogx(s) - np.where(s > 0, s * np.log(np.maximum(model, 1e-300)), 0.0))


def _poisson_span(mu: float) -> np.ndarray:
    lo = max(0.0, mu - SPAN_SIGMA * np.sqrt(mu) - 5.0)
    return np.arange(np.floor(lo), np.ceil(mu + SPAN_SIGMA * np.sqrt(mu) + 10.0) + 1.0)


def expected_terms(model, bkg_src=None, kappa=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each group's statistic when its counts are Poisson draws of the
    fit: C for ``bkg_src`` None, else W-stat with the background ``bkg_src`` (counts in the
    source region) and ``kappa``."""
    model = np.asarray(model, float)
    mean, var = np.ones(len(model)), np.full(len(model), 2.0)
    for k, m in enumerate(model):
        mu_s = m + (0.0 if bkg_src is None else bkg_src[k])
        mu_b = None if bkg_src is None else kappa[k] * bkg_src[k]
        if mu_s > LARGE_COUNTS and (mu_b is None or mu_b > LARGE_COUNTS):
            continue
        ns = _poisson_span(mu_s)
        ps = stats.poisson.pmf(ns, mu_s)
        if mu_b is None:
            t = cstat_terms(ns, m)
            w = ps
        else:
            nb = _poisson_span(mu_b)
            S, B = np.meshgrid(ns, nb, indexing="ij")
            t = wstat_terms(S, B, m, kappa[k])
            w = ps[:, None] * stats.poisson.pmf(nb, mu_b)[None, :]
        w = w / w.sum()
        mean[k] = float(np.sum(w * t))
        var[k] = float(np.sum(w * t * t) - mean[k] ** 2)
    return mean, var


def expected_goodness(ids, n_free: int) -> dict:
    """The observed statistic of the current sherpa fit of ``ids`` (cstat or wstat) against
    its expectation (see the module docstring)."""
    from xmmext.fitting.session import sherpa_session
    ui = sherpa_session()
    observed, mean, var = 0.0, 0.0, 0.0
    for i in ids:
        d = ui.get_data(i)
        s = np.asarray(d.get_dep(filter=True), float)
        model = np.asarray(d.eval_model_to_fit(ui.get_model(i)), float)
        if getattr(d, "background_ids", None) and not d.subtracted and ui.get_stat_name() == "wstat":
            bid = d.background_ids[0]
            b = np.asarray(d.apply_filter(d.get_background(bid).counts, groupfunc=np.sum), float)
            kappa = 1.0 / np.broadcast_to(np.asarray(d.get_background_scale(bid, units="counts", group=True,
                                                                            filter=True), float), s.shape)
            observed += float(wstat_terms(s, b, model, kappa).sum())
            e, v = expected_terms(model, profiled_background(s, b, model, kappa), kappa)
        else:
            observed += float(cstat_terms(s, model).sum())
            e, v = expected_terms(model)
        mean += float(e.sum())
        var += float(v.sum())
    expected = mean - n_free
    z = (observed - expected) / np.sqrt(var) if var > 0 else float("nan")
    return {"method": "expected statistic of Poisson draws of the best fit (Kaastra 2017), no refits",
            "observed": observed, "expected": expected, "sigma": float(np.sqrt(var)), "z": float(z),
            "p_value": float(stats.norm.sf(z))}


def simulated_goodness(ids, free_pars, n: int, seed: int) -> dict:
    """Goodness of the current sherpa fit of data sets ``ids`` from ``n`` refitted
    simulations; the session (counts, parameter values) is restored afterwards."""
    from xmmext.fitting.session import sherpa_session
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
        from tqdm import tqdm
        # refits take ~0.1-1 s each: a bar on a terminal (disable=None: none in logs and pipes)
        for _ in tqdm(range(n), desc="fit: goodness simulations", unit="fit", disable=None, leave=False):
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
