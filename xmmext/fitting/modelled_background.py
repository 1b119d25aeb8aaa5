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

import json
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

import xmmext.events.particles as particles
import xmmext.instrument as ins
import xmmext.xspec.library as xm
from xmmext.spectra.model_inputs import read_oot
from xmmext.core.errors import UsageError
from xmmext.spectra.grouping import DEFAULT_GROUP, group_min_counts, min_width_channels, parse_group
from xmmext.fitting.fluxes import flux_table
from xmmext.fitting.inputs import check_spectrum
from xmmext.fitting.session import sherpa_session
from xmmext.fitting.sherpa_engine import (CONF_SIGMA, _apply_defaults, _check_model_not_zero, _freeze_undetected, _held_at_best_fit,
                            _par_record, cross_normalisation, xspec_name)
from xmmext.fitting.sherpa_model import build_sherpa_model, register_energy_grids

log = logging.getLogger("xmmext.fitting")
CXB_INDEX = 1.46                                  # extragalactic background power law
LINES_KEV = {"mos": (1.487, 1.740), "pn": (1.487,)}   # instrumental Al K, Si K below 7 keV
REGIONS = ("src", "bkg", "corner")
# units of the background parameters, so that they are all of order 1 (the covariance is
# computed numerically over them and the source's parameters together)
PARTICLE_UNIT = 1e-4          # counts / s / arcmin^2 (x the template's shape)
SKY_UNIT = 1e-6               # XSPEC norm per arcmin^2
SP_UNIT = 1e-4                # photons / s / keV / arcmin^2 at 1 keV, RMF only


def read_sidecar(cam: str, path: Path) -> dict:
    """The camera's <cam>_bkgmodel.json beside its spectrum (exit 2 when missing)."""
    side = Path(path).parent / f"{cam}_bkgmodel.json"
    if not side.exists():
        raise UsageError(f"{cam}: --background model needs {side.name} from step 3 (native spectral_analysis.py)",
                         side)
    info = json.loads(side.read_text())
    for key in ("src", "bkg"):
        if key not in info.get("regions", {}):
            raise UsageError(f"{cam}: {side.name} has no {key} region", side)
    return info


def sidecar_inputs(cam: str, path: Path) -> list[Path]:
    """Every file the modelled background of one camera reads (for the step's fingerprint)."""
    side = Path(path).parent / f"{cam}_bkgmodel.json"
    info = read_sidecar(cam, path)
    folder = side.parent
    files = [side]
    for reg in info["regions"].values():
        files += [folder / reg[k] for k in ("pha", "sky_arf", "cluster_arf", "oot_file") if reg.get(k)]
    return list(dict.fromkeys(files))


@lru_cache(maxsize=1)
def _channel_models():
    """sherpa models evaluated in channel space (the full channel array, as the response-
    folded models return it, so they can be added to them in a full model)."""
    from sherpa.models.model import ArithmeticModel
    from sherpa.models.parameter import Parameter

    class ParticleContinuum(ArithmeticModel):
        """level (counts / s / arcmin^2 in the template's units) x scale x fixed shape."""
        def __init__(self, name, shape, scale):
            self.shape, self.scale = shape, scale
            self.level = Parameter(name, "level", 1.0, 0.0, 1e6)
            ArithmeticModel.__init__(self, name, (self.level,))

        def calc(self, p, *args, **kw):
            return p[0] * self.scale * self.shape

    class ChannelLines(ArithmeticModel):
        """Gaussian lines at fixed energies with the instrument's resolution; each amplitude
        is counts / s / arcmin^2."""
        def __init__(self, name, profiles, scale):
            self.profiles, self.scale = profiles, scale
            pars = tuple(Parameter(name, f"line{k + 1}", 0.0, 0.0, 1e6) for k in range(len(profiles)))
            for par in pars:
                setattr(self, par.name, par)
            ArithmeticModel.__init__(self, name, pars)

        def calc(self, p, *args, **kw):
            return self.scale * sum(a * prof for a, prof in zip(p, self.profiles))

    class FixedCounts(ArithmeticModel):
        """Known counts per channel (pn out-of-time events), not fitted."""
        def __init__(self, name, counts):
            self.counts = counts
            self.scale = Parameter(name, "scale", 1.0, 0.0, 10.0, frozen=True)
            ArithmeticModel.__init__(self, name, (self.scale,))

        def calc(self, p, *args, **kw):
            return p[0] * self.counts
    return ParticleContinuum, ChannelLines, FixedCounts


def fit_background_model(spectra: list[tuple[str, Path]], expr, opts) -> dict:
    """The joint fit described above; returns the fit.json content."""
    from sherpa.models.basic import PowLaw1D
    ui = sherpa_session()
    ui.clean()
    xm.set_abundances(opts.abund_table)
    xm.set_cross_sections("vern")
    model, comps = build_sherpa_model(expr)
    _apply_defaults(expr, comps, opts)
    _check_model_not_zero(expr, comps)
    sky, sky_comps = _sky_model(opts, comps, expr)
    notes = ["background modelled (source, background and corner spectra fitted together; cstat)"]
    n = len(spectra)
    src_ids, other_ids, cross, nuisance, grids, soft_protons = [], [], {}, [], [], []
    src_background = {}
    group = parse_group(DEFAULT_GROUP)
    for k, (cam, path) in enumerate(spectra):
        info = read_sidecar(cam, path)
        notes += [f"{cam}: {t}" for t in info.get("notes", [])]
        files = check_spectrum(cam, path, opts)
        camera = ins.camera(cam)
        cluster = model
        if k:
            c = cross[cam] = cross_normalisation(cam)
            cluster = c * model
        e_ch = (np.arange(camera.n_channels) + 0.5) * ins.CHANNEL_EV / 1000.0
        shape = particles.particle_shape(cam, e_ch) * ins.CHANNEL_EV / 1000.0
        profiles = [_line_profile(camera, e_ch, e) for e in LINES_KEV["pn" if cam == "pn" else "mos"]]
        sp = PowLaw1D(f"soft_protons_{cam}")
        # soft-proton spectra unfolded through the RMF alone are flat-ish power laws (index
        # ~0.4-1.0, Kuntz & Snowden 2008): a range of 0-1.5 keeps them from mimicking the soft sky
        sp.gamma, sp.gamma.min, sp.gamma.max = 0.8, 0.0, 1.5
        sp.ampl, sp.ampl.min = 1.0, 0.0
        level = None
        folder = Path(path).parent
        for key in REGIONS:
            reg = info["regions"].get(key)
            if reg is None:
                continue
            data_id = k + 1 if key == "src" else n + len(other_ids) + 1
            pha_path = Path(path) if key == "src" else folder / reg["pha"]
            d = _load(ui, data_id, pha_path, files["RESPFILE"], files["ANCRFILE"] if key == "src" else None)
            if key != "src":
                g, q = group_min_counts(d.counts, group.value, 0, len(d.counts) - 1,
                                        min_width_channels(camera, group.oversample, len(d.counts)))
                g, q = _particle_band_group(g, q, cam)
                ui.set_grouping(data_id, g)
                ui.set_quality(data_id, q)
                ui.group(data_id)
            ui.ignore_id(data_id, None, None)
            ui.notice_id(data_id, opts.emin, opts.emax)
            if key != "src" and opts.emax < particles.PARTICLE_BAND[cam][0]:
                # their 10-12 keV counts, as one bin: they tie the particle level (through the
                # template) where there are no corner events, whatever lines the band holds
                ui.notice_id(data_id, *particles.PARTICLE_BAND[cam])
            total, level, lines, bkg_part = _region_model(d, key, reg, folder, cam, cluster, sky, sp, shape, profiles,
                                                          level, opts)
            if key == "src":
                src_background[cam] = (d, bkg_part)
            nuisance += list(lines.pars)
            ui.set_full_model(data_id, total)
            (src_ids if key == "src" else other_ids).append(data_id)
            grids.append(np.append(d.get_rmf().energ_lo, d.get_rmf().energ_hi[-1]))
        nuisance += [level, sp.gamma, sp.ampl]
        soft_protons.append(sp)
    register_energy_grids({**comps, **sky_comps}, grids)
    other_ids.append(_cxb_prior(ui, n + len(other_ids) + 1, sky_comps))
    notes.append(f"the cosmic X-ray background's norm held near {CXB_PRIOR_PH:g} ph/cm2/s/sr/keV at 1 keV by a "
                 f"{100 * CXB_PRIOR_WIDTH:.0f}% prior (a pseudo-observation), so that one sky gives one sky norm")
    ui.set_stat("cstat")
    ui.set_method("levmar")
    ids = src_ids + other_ids
    _staged_fit(ui, src_ids, other_ids, expr, comps, cross, sky_comps)
    more, undetected, without = _freeze_undetected(expr, comps, ids)
    notes += more
    fr = ui.get_fit_results()
    main = [p for c in comps.values() for p in c.pars if not p.frozen and p not in undetected] + \
        [c.c0 for c in cross.values()]
    if fr.dof > 0 and fr.statval / fr.dof > 3:
        notes.append(f"poor fit: statistic/dof = {fr.statval / fr.dof:.1f}")
    sky_free = [p for c in sky_comps.values() for p in c.pars if not p.frozen]
    held = _freeze_at_bounds(nuisance + sky_free, soft_protons)
    if held:
        notes.append("background parameters at a limit, held there for the errors: " + ", ".join(held))
    others = [p for p in nuisance + sky_free if not p.frozen and p.link is None]
    from xmmext.fitting.goodness import expected_goodness
    expected = expected_goodness(ids, len(main) + len(others) + len(undetected))
    with _held_at_best_fit(undetected):       # an undetected norm sits at zero: no Gaussian interval
        cov = _fisher_covariance(ui, ids, main + others)
    z = CONF_SIGMA[opts.conf]
    sig = np.sqrt(np.clip(np.diag(cov)[: len(main)], 0, None))
    errs = {p.fullname: (-z * s_, z * s_) for p, s_ in zip(main, sig)}
    cov_names, cov = [xspec_name(p) for p in main], cov[: len(main), : len(main)]
    notes.append(f"{opts.conf}% intervals from the Fisher information of the Poisson likelihood of every "
                 "region's counts, the background's parameters included (profile searches over ~30 of them "
                 "take minutes)")
    params = {f"{c.name}.{p}": _par_record(getattr(comps[c.name], p), errs)
              for c in expr.components for p in c.parameter_names()}
    params.update({f"cross_norm.{cam}": _par_record(c.c0, errs) for cam, c in cross.items()})
    values = {key: v["value"] for key, v in params.items()}
    background = {p.fullname: float(p.val) for p in nuisance}
    background.update({p.fullname: float(p.val) * (SKY_UNIT if p.name == "norm" else 1.0)
                       for c in sky_comps.values() for p in c.pars if not p.frozen})
    background["units"] = (f"particle levels and lines: {PARTICLE_UNIT:g} counts/s/arcmin^2; soft-proton ampl: "
                           f"{SP_UNIT:g} photons/s/keV/arcmin^2 at 1 keV (RMF only); sky norms: per arcmin^2")
    return {
        "engine": "sherpa", "model": expr.text, "model_xspec": expr.xspec_string(),
        "statistic": {"name": "cstat", "sherpa_name": "cstat", "value": float(fr.statval), "dof": int(fr.dof),
                      "reduced": float(fr.statval / fr.dof) if fr.dof > 0 else None},
        "parameters": params, "conf_level": opts.conf, "energy_range_keV": [opts.emin, opts.emax],
        "abund_table": opts.abund_table, "cross_sections": "vern", "background": "model",
        "background_model": background,
        "spectra": [{"camera": cam, "file": str(path)} for cam, path in spectra],
        "fluxes": flux_table(expr, values, cov_names, cov, opts), "notes": notes, "goodness_expected": expected,
        "undetected": [xspec_name(p) for p in undetected], "without_component": without,
        # not in fit.json: the fitted background of each source spectrum, per channel
        "source_region_background": {cam: np.asarray(d.eval_model(part), float)
                                     for cam, (d, part) in src_background.items()},
    }


def _particle_band_group(grouping: np.ndarray, quality: np.ndarray, cam: str) -> tuple[np.ndarray, np.ndarray]:
    """The grouping with the particle band (10-12 keV) as one group of good channels."""
    g, q = np.array(grouping), np.array(quality)
    lo, hi = (int(round(e * 1000 / ins.CHANNEL_EV)) for e in particles.PARTICLE_BAND[cam])
    hi = min(hi, len(g))
    g[lo], g[lo + 1:hi], q[lo:hi] = 1, -1, 0
    if hi < len(g):
        g[hi] = 1
    return g, q


CXB_PRIOR_PH = 11.6           # photons / cm^2 / s / sr / keV at 1 keV (De Luca & Molendi 2004)
CXB_PRIOR_WIDTH = 0.2         # its spread from field to field (cosmic variance, source excision)


def _cxb_prior(ui, data_id: int, sky_comps: dict) -> int:
    """A pseudo-observation of the CXB norm: one bin of N0 = 1 / width^2 counts against the
    model N0 x norm / norm0 (a Poisson, close to Gaussian, prior of the given width), so
    that without corner events the particles and soft protons cannot trade places with the
    sky. Returns its data id."""
    from sherpa.data import Data1D
    from sherpa.models.basic import Scale1D
    pl = next(o for name, o in sky_comps.items() if "powerlaw" in name.lower())
    n0 = 1.0 / CXB_PRIOR_WIDTH ** 2
    norm0 = CXB_PRIOR_PH / 1.1818e7 / SKY_UNIT              # per arcmin^2, in the sky norms' unit
    ui.set_data(data_id, Data1D("cxb_prior", np.array([1.0]), np.array([n0])))
    prior = Scale1D("cxb_prior")
    prior.c0 = pl.norm * (n0 / norm0)
    ui.set_source(data_id, prior)
    return data_id


SOURCE_BACKGROUND_FILE = "source_background.fits"


def write_source_background(path: Path, counts: dict) -> Path:
    """The fitted background of each camera's source spectrum (expected counts per channel:
    particles, lines, pn OOT, sky, soft protons - all but the source) as one FITS table per
    camera, for fits that take the background as known (the profile's cross-talk fit)."""
    from astropy.io import fits
    from xmmext.core.fileio import write_fits
    hdus = [fits.PrimaryHDU()]
    for cam, c in counts.items():
        hdu = fits.BinTableHDU.from_columns([fits.Column("CHANNEL", "J", array=np.arange(len(c))),
                                             fits.Column("COUNTS", "D", unit="count", array=c)], name=cam.upper())
        hdu.header["COMMENT"] = "modelled background of the source spectrum (--background model), expected counts"
        hdus.append(hdu)
    write_fits(path, fits.HDUList(hdus))
    return path


def read_source_background(path: Path, cam: str) -> np.ndarray:
    """One camera's table of :func:`write_source_background`."""
    from astropy.io import fits
    with fits.open(path) as h:
        return np.asarray(h[cam.upper()].data["COUNTS"], float)


def _region_model(d, key: str, reg: dict, folder: Path, cam: str, cluster, sky, sp, shape, profiles, level, opts):
    """The full model of one region's spectrum (see the module docstring); returns it, the
    camera's particle level (created with the first region), the region's lines and the
    part of the model that is not the source (its background)."""
    from sherpa.astro.instrument import RMFModelPHA, RSPModelPHA
    from sherpa.astro.io import read_arf
    from sherpa.models.basic import Scale1D
    ParticleContinuum, ChannelLines, FixedCounts = _channel_models()
    rmf, expo = d.get_rmf(), float(d.exposure)
    scale = reg["exposed_arcmin2"] * expo * PARTICLE_UNIT
    cont = ParticleContinuum(f"particle_{cam}_{key}", shape, scale)
    if level is None:
        level = cont.level
        level.val = _start_level(d, shape, scale, opts)
    else:
        cont.level = level                      # one particle level per camera
    lines = ChannelLines(f"lines_{cam}_{key}", profiles, scale)
    for par in lines.pars:                      # off the bound at zero, where LM would not move it
        par.val = 0.03 * level.val
    total = cont + lines
    if reg.get("oot_file"):                     # pn out-of-time events: known, not fitted
        total = total + FixedCounts(f"out_of_time_{cam}_{key}", read_oot(folder / reg["oot_file"], key))
    # sherpa's RSP/RMF models give counts per second: each folded model carries the
    # exposure (and the region's area, share or soft-proton weight) as a fixed factor
    if key != "corner":
        a_sky = _fixed(Scale1D, f"area_{cam}_{key}", reg["area_arcmin2"] * expo * SKY_UNIT)
        total = total + RSPModelPHA(read_arf(str(folder / reg["sky_arf"])), rmf, d, a_sky * sky)
        a_sp = _fixed(Scale1D, f"sp_area_{cam}_{key}", reg["exposed_arcmin2"] * reg["sp_weight"] * expo * SP_UNIT)
        total = total + RMFModelPHA(rmf, d, a_sp * sp)
    background = total
    if key == "src":
        total = RSPModelPHA(d.get_arf(), rmf, d, _fixed(Scale1D, f"exposure_{cam}", expo) * cluster) + total
    elif key == "bkg" and reg.get("cluster_arf"):
        share = _fixed(Scale1D, f"cluster_share_{cam}", reg["cluster_ratio"] * expo)
        total = RSPModelPHA(read_arf(str(folder / reg["cluster_arf"])), rmf, d, share * cluster) + total
    return total, level, lines, background


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


def _fixed(cls, name: str, value: float):
    """A frozen constant factor."""
    c = cls(name)
    c.c0, c.c0.frozen = value, True
    return c


def _load(ui, data_id, pha: Path, rmf: Path, arf: Path | None):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ui.load_pha(data_id, str(pha), use_errors=False)
    d = ui.get_data(data_id)
    for bid in list(d.background_ids):       # nothing is subtracted: the background is modelled
        d.delete_background(bid)
    ui.load_rmf(data_id, str(rmf))
    if arf is not None:
        ui.load_arf(data_id, str(arf))
    if d.quality is not None and np.any(d.quality != 0):
        ui.ignore_bad(data_id)
    return d


def _line_profile(cam: ins.Camera, e_ch: np.ndarray, energy: float) -> np.ndarray:
    """A line at ``energy`` (keV) as the detector records it, per channel (sums to 1)."""
    sigma = float(cam.sigma_kev(energy))
    prof = np.exp(-0.5 * ((e_ch - energy) / sigma) ** 2)
    return prof / prof.sum()


def _start_level(d, shape, scale, opts) -> float:
    """Particle level that gives the spectrum's counts above 5 keV (where particles dominate)."""
    e = np.asarray(d.channel, float) * ins.CHANNEL_EV / 1000.0
    sel = (e > max(5.0, opts.emin)) & (e < opts.emax)
    model = float(np.sum(shape[: len(e)][sel]) * scale)
    return float(np.clip(np.sum(d.counts[sel]) / model, 1e-3, 1e5)) if model > 0 else 1.0


def _sky_model(opts, comps, expr):
    """CXB (absorbed power law, index 1.46) + Galactic foreground (unabsorbed thermal:
    apec 0.2 keV with AtomDB, else bremss), norms per arcmin^2; the absorber takes the
    source model's nH."""
    from xmmext.xspec.atomdb import find_apec_files
    from xmmext.xspec.expression import parse_model
    thermal = "apec" if find_apec_files() else "bremss"
    sky_expr = parse_model(f"tbabs*powerlaw+{thermal}")
    sky, objs = build_sherpa_model(sky_expr, prefix="sky_")
    named = {c.name: objs[c.name] for c in sky_expr.components}
    absorber = next(o for name, o in named.items() if name.lower().startswith("tbabs"))
    src_abs = next((comps[c.name] for c in expr.components if c.xspec_name.lower() in ("tbabs", "phabs", "wabs")),
                   None)
    absorber.nH = src_abs.nH if src_abs is not None else (opts.nh or 0.0)
    pl = next(o for name, o in named.items() if name.lower().startswith("powerlaw"))
    pl.PhoIndex, pl.PhoIndex.frozen = CXB_INDEX, True
    pl.norm = 1.0
    fg = next(o for name, o in named.items() if name.lower().startswith(thermal))
    fg.kT, fg.kT.min, fg.kT.max = 0.2, 0.08, 0.6
    fg.norm = 10.0 if thermal == "bremss" else 4.0
    if thermal == "apec":
        fg.Abundanc.frozen = True
        fg.Redshift.frozen = True
    return sky, {f"sky_{name}": o for name, o in named.items()}


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
