"""``--background model``: the source, background-region and out-of-FOV corner spectra of
every camera fitted together, ESAS-style, with the likelihood of all their counts (cstat,
no subtraction). Each region's counts are modelled as

  source      response(source ARF)        x  source model                    (src only)
              response(bkg cluster ARF)   x  source model x flux share        (bkg only:
                                             the source's own emission, from step 2's beta model)
  sky         response(region's sky ARF)  x  [tbabs x powerlaw(1.46) + Galactic foreground]
                                             x region area          (norms per arcmin^2, shared)
  soft protons  RMF only (not the mirrors' area) x powerlaw x exposed area x SP vignetting weight
  particles   in channel space: the measured particle continuum template x level x exposed area
              (level per camera, the same in all three regions) + instrumental lines (Al K, Si K;
              free per region, since their strength varies across the detector)
  pn OOT      in channel space, fixed: the out-of-time events step 3 expects in the region

The files and numbers come from step 3's ``<cam>_bkgmodel.json``
(:mod:`xmmext.spectra.model_inputs`). Built for the sherpa engine only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import xmmext.events.particles as particles
import xmmext.instrument as ins
import xmmext.xspec.library as xm
from xmmext.fitting.background_parts import (CXB_PRIOR_PH, CXB_PRIOR_WIDTH, LINES_KEV, PARTICLE_UNIT, REGIONS,
                                             SKY_UNIT, SP_UNIT, cxb_prior, line_profile, load_unsubtracted,
                                             particle_band_group, read_sidecar, region_model, sky_model)
from xmmext.fitting.fluxes import flux_table
from xmmext.fitting.goodness import expected_goodness
from xmmext.fitting.inputs import check_spectrum
from xmmext.fitting.plots import folded_spectra
from xmmext.fitting.session import sherpa_session
from xmmext.fitting.sherpa_setup import (CONF_SIGMA, apply_defaults, check_model_not_zero, cross_normalisation,
                                         freeze_undetected,
                                         held_at_best_fit, par_record,
                                         xspec_name)
from xmmext.fitting.sherpa_model import build_sherpa_model, register_energy_grids
from xmmext.spectra.grouping import DEFAULT_GROUP, group_min_counts, min_width_channels, parse_group

__all__ = ["fit_background_model"]
log = logging.getLogger("xmmext.fitting")


def fit_background_model(spectra: list[tuple[str, Path]], expr, opts) -> dict:
    """The joint fit described above; returns the fit.json content."""
    ui = sherpa_session()
    ui.clean()
    xm.set_abundances(opts.abund_table)
    xm.set_cross_sections("vern")
    model, comps = build_sherpa_model(expr)
    apply_defaults(expr, comps, opts)
    check_model_not_zero(expr, comps)
    sky, sky_comps = sky_model(opts, comps, expr)
    j = _JointData(notes=["background modelled (source, background and corner spectra fitted together; cstat)"])
    for k, (cam, path) in enumerate(spectra):
        _load_camera(ui, j, k, len(spectra), cam, path, model, sky, opts)
    register_energy_grids({**comps, **sky_comps}, j.grids)
    j.other_ids.append(cxb_prior(ui, len(spectra) + len(j.other_ids) + 1, sky_comps))
    j.notes.append(f"the cosmic X-ray background's norm held near {CXB_PRIOR_PH:g} ph/cm2/s/sr/keV at 1 keV by a "
                   f"{100 * CXB_PRIOR_WIDTH:.0f}% prior (a pseudo-observation), so that one sky gives one sky norm")
    ui.set_stat("cstat")
    ui.set_method("levmar")
    _staged_fit(ui, j.src_ids, j.other_ids, expr, comps, j.cross, sky_comps)
    return _result(ui, j, spectra, expr, comps, sky_comps, opts)


@dataclass
class _JointData:
    """What the loading of every camera's regions builds up for the joint fit."""
    notes: list
    src_ids: list = field(default_factory=list)
    other_ids: list = field(default_factory=list)
    cross: dict = field(default_factory=dict)          # camera -> cross-normalisation
    nuisance: list = field(default_factory=list)       # background parameters
    grids: list = field(default_factory=list)          # energy grids of the responses
    soft_protons: list = field(default_factory=list)
    src_background: dict = field(default_factory=dict)  # camera -> (data, its background model)


def _load_camera(ui, j: _JointData, k: int, n: int, cam: str, path: Path, model, sky, opts) -> None:
    """Load one camera's source, background and corner spectra with their full models."""
    from sherpa.models.basic import PowLaw1D
    info = read_sidecar(cam, path)
    j.notes += [f"{cam}: {t}" for t in info.get("notes", [])]
    files = check_spectrum(cam, path, opts)
    camera = ins.camera(cam)
    cluster = model
    if k:
        c = j.cross[cam] = cross_normalisation(cam)
        cluster = c * model
    e_ch = (np.arange(camera.n_channels) + 0.5) * ins.CHANNEL_EV / 1000.0
    shape = particles.particle_shape(cam, e_ch) * ins.CHANNEL_EV / 1000.0
    profiles = [line_profile(camera, e_ch, e) for e in LINES_KEV["pn" if cam == "pn" else "mos"]]
    sp = PowLaw1D(f"soft_protons_{cam}")
    # soft-proton spectra unfolded through the RMF alone are flat-ish power laws (index
    # ~0.4-1.0, Kuntz & Snowden 2008): a range of 0-1.5 keeps them from mimicking the soft sky
    sp.gamma, sp.gamma.min, sp.gamma.max = 0.8, 0.0, 1.5
    sp.ampl, sp.ampl.min = 1.0, 0.0
    level = None
    folder = Path(path).parent
    group = parse_group(DEFAULT_GROUP)
    for key in REGIONS:
        reg = info["regions"].get(key)
        if reg is None:
            continue
        data_id = k + 1 if key == "src" else n + len(j.other_ids) + 1
        pha_path = Path(path) if key == "src" else folder / reg["pha"]
        d = load_unsubtracted(ui, data_id, pha_path, files["RESPFILE"], files["ANCRFILE"] if key == "src" else None)
        if key != "src":
            g, q = group_min_counts(d.counts, group.value, 0, len(d.counts) - 1,
                                    min_width_channels(camera, group.oversample, len(d.counts)))
            g, q = particle_band_group(g, q, cam)
            ui.set_grouping(data_id, g)
            ui.set_quality(data_id, q)
            ui.group(data_id)
        ui.ignore_id(data_id, None, None)
        ui.notice_id(data_id, opts.emin, opts.emax)
        if key != "src" and opts.emax < particles.PARTICLE_BAND[cam][0]:
            # their 10-12 keV counts, as one bin: they tie the particle level (through the
            # template) where there are no corner events, whatever lines the band holds
            ui.notice_id(data_id, *particles.PARTICLE_BAND[cam])
        total, level, lines, bkg_part = region_model(d, key, reg, folder, cam, cluster, sky, sp, shape, profiles,
                                                     level, opts)
        if key == "src":
            j.src_background[cam] = (d, bkg_part)
        j.nuisance += list(lines.pars)
        ui.set_full_model(data_id, total)
        (j.src_ids if key == "src" else j.other_ids).append(data_id)
        j.grids.append(np.append(d.get_rmf().energ_lo, d.get_rmf().energ_hi[-1]))
    j.nuisance += [level, sp.gamma, sp.ampl]
    j.soft_protons.append(sp)


def _result(ui, j: _JointData, spectra, expr, comps: dict, sky_comps: dict, opts) -> dict:
    """Errors from the Fisher information of every region's counts; the fit.json content."""
    ids = j.src_ids + j.other_ids
    more, undetected, without = freeze_undetected(expr, comps, ids)
    notes = j.notes + more
    fr = ui.get_fit_results()
    main = [p for c in comps.values() for p in c.pars if not p.frozen and p not in undetected] + \
        [c.c0 for c in j.cross.values()]
    if fr.dof > 0 and fr.statval / fr.dof > 3:
        notes.append(f"poor fit: statistic/dof = {fr.statval / fr.dof:.1f}")
    sky_free = [p for c in sky_comps.values() for p in c.pars if not p.frozen]
    held = _freeze_at_bounds(j.nuisance + sky_free, j.soft_protons)
    if held:
        notes.append("background parameters at a limit, held there for the errors: " + ", ".join(held))
    others = [p for p in j.nuisance + sky_free if not p.frozen and p.link is None]
    expected = expected_goodness(ids, len(main) + len(others) + len(undetected))
    with held_at_best_fit(undetected):       # an undetected norm sits at zero: no Gaussian interval
        cov = _fisher_covariance(ui, ids, main + others)
    z = CONF_SIGMA[opts.conf]
    sig = np.sqrt(np.clip(np.diag(cov)[: len(main)], 0, None))
    errs = {p.fullname: (-z * s_, z * s_) for p, s_ in zip(main, sig)}
    cov_names, cov = [xspec_name(p) for p in main], cov[: len(main), : len(main)]
    notes.append(f"{opts.conf}% intervals from the Fisher information of the Poisson likelihood of every "
                 "region's counts, the background's parameters included (profile searches over ~30 of them "
                 "take minutes)")
    params = {f"{c.name}.{p}": par_record(getattr(comps[c.name], p), errs)
              for c in expr.components for p in c.parameter_names()}
    params.update({f"cross_norm.{cam}": par_record(c.c0, errs) for cam, c in j.cross.items()})
    values = {key: v["value"] for key, v in params.items()}
    return {
        "engine": "sherpa", "model": expr.text, "model_xspec": expr.xspec_string(),
        "statistic": {"name": "cstat", "sherpa_name": "cstat", "value": float(fr.statval), "dof": int(fr.dof),
                      "reduced": float(fr.statval / fr.dof) if fr.dof > 0 else None},
        "parameters": params, "conf_level": opts.conf, "energy_range_keV": [opts.emin, opts.emax],
        "abund_table": opts.abund_table, "cross_sections": "vern", "background": "model",
        "background_model": _background_record(j.nuisance, sky_comps),
        "spectra": [{"camera": cam, "file": str(path)} for cam, path in spectra],
        "fluxes": flux_table(expr, values, cov_names, cov, opts), "notes": notes, "goodness_expected": expected,
        "undetected": [xspec_name(p) for p in undetected], "without_component": without,
        # not in fit.json: the fitted background of each source spectrum, per channel
        "source_region_background": {cam: np.asarray(d.eval_model(part), float)
                                     for cam, (d, part) in j.src_background.items()},
        "folded_spectra": folded_spectra([cam for cam, _ in spectra]),       # for fit.png, not fit.json
    }


def _background_record(nuisance: list, sky_comps: dict) -> dict:
    """The fitted background parameters, in the units fit.json states."""
    background = {p.fullname: float(p.val) for p in nuisance}
    background.update({p.fullname: float(p.val) * (SKY_UNIT if p.name == "norm" else 1.0)
                       for c in sky_comps.values() for p in c.pars if not p.frozen})
    background["units"] = (f"particle levels and lines: {PARTICLE_UNIT:g} counts/s/arcmin^2; soft-proton ampl: "
                           f"{SP_UNIT:g} photons/s/keV/arcmin^2 at 1 keV (RMF only); sky norms: per arcmin^2")
    return background


def _fisher_covariance(ui, ids, pars) -> np.ndarray:
    """Covariance of ``pars`` as the inverse of the Fisher information of Poisson counts,
    F_ij = sum_k (d mu_k / d p_i)(d mu_k / d p_j) / mu_k over every group of every data set
    (first derivatives only: positive semi-definite, unlike a numerical Hessian over
    parameters of very different sizes)."""
    def predicted():
        return np.concatenate([ui.get_data(i).eval_model_to_fit(ui.get_model(i)) for i in ids])
    mu = predicted()
    jac = np.empty((len(pars), len(mu)))
    for k, p in enumerate(pars):
        v = p.val
        h = 1e-4 * abs(v) if v != 0 else 1e-4
        if v + h > p.max:
            h = -h
        p.val = v + h
        try:
            jac[k] = (predicted() - mu) / h
        finally:
            p.val = v
    fisher = (jac / np.maximum(mu, 1e-12)) @ jac.T
    return np.linalg.pinv(fisher, hermitian=True)


def _freeze_at_bounds(pars, power_laws) -> list[str]:
    """Freeze background parameters that ended on a limit, and the index of a power law
    whose norm is zero (undetermined: the covariance would be singular); return their names."""
    held = []
    for pl in power_laws:
        if pl.ampl.val <= pl.ampl.min and not pl.gamma.frozen:
            pl.gamma.frozen = True
            held.append(pl.gamma.fullname)
    for p in pars:
        if p.frozen or p.link is not None:
            continue
        at_min = p.val - p.min <= 1e-8 * max(abs(p.val), abs(p.min), 1e-300)
        at_max = p.max - p.val <= 1e-8 * max(abs(p.val), abs(p.max), 1e-300)
        if at_min or at_max:
            p.frozen = True
            held.append(p.fullname)
    return held


def _staged_fit(ui, src_ids, other_ids, expr, comps, cross, sky_comps) -> None:
    """Corners and background regions first (the source frozen), then everything."""
    held = [p for c in comps.values() for p in c.pars if not p.frozen] + [c.c0 for c in cross.values()]
    for p in held:
        p.frozen = True
    try:
        ui.fit(*other_ids)
    finally:
        for p in held:
            p.frozen = False
    _scale_source(ui, src_ids, expr, comps)
    ui.fit(*src_ids, *other_ids)
    ui.fit(*src_ids, *other_ids)


def _scale_source(ui, src_ids, expr, comps) -> None:
    """Start the source's norms where the first source spectrum's excess over the fitted
    background puts them."""
    total = float(np.sum(ui.get_data(src_ids[0]).get_dep(filter=True)))
    model = float(ui.calc_model_sum(None, None, src_ids[0]))
    adds = [comps[c.name] for c in expr.components if c.kind == "add"]
    before = model
    for obj in adds:
        obj.norm.val *= 1e-6
    bkg_only = float(ui.calc_model_sum(None, None, src_ids[0]))
    for obj in adds:
        obj.norm.val *= 1e6
    source = before - bkg_only
    if source > 0 and total > bkg_only:
        f = (total - bkg_only) / source
        for obj in adds:
            if not obj.norm.frozen:
                obj.norm.val = float(np.clip(obj.norm.val * f, obj.norm.min, obj.norm.max))
