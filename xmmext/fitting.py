"""Step 4: joint spectral fits of the cameras with sherpa (+ XSPEC's model library) or PyXspec.

* The model is an XSPEC expression (:mod:`xmmext.modelexpr`); each camera after the
  first gets a free cross-normalisation constant; parameter names are XSPEC's.
* sherpa engine (works without HEASoft): the spectra are loaded with sherpa's OGIP I/O,
  which finds background, RMF and ARF from the header keywords; statistic cstat (W-stat
  when a background is loaded and not modelled, as XSPEC does), or chi2 on grouped
  data; Levenberg-Marquardt then simplex; errors from sherpa's ``conf`` (a profile
  search, 90% by default); fluxes with errors from parameter draws on the covariance.
* pyxspec engine (when HEASoft's PyXspec imports): the same fit as a PyXspec script,
  which is also written to fit_pyxspec.py. NOT RUN here (no HEASoft): it is tested on the
  statements it sends.
* Outputs: fit.json, fit.csv, fit.xcm (XSPEC ``@fit.xcm`` reproduces the fit), fit.png.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import xspec_models as xm
from .atomdb import configure_xspec, find_apec_files, missing_data_message, needs_atomdb
from .errors import DataError, DependencyError, UsageError
from .fileio import save_figure, write_json, write_text
from .modelexpr import ModelExpression, parse_model
from .ogip import read_pha

log = logging.getLogger("xmmext.fitting")
KEV_TO_ERG = 1.602176634e-9
ABSORBERS = {"tbabs", "phabs", "wabs", "tbgrain", "tbvarabs", "ztbabs", "zphabs", "zwabs", "tbpcf", "pcfabs"}
FLUX_BANDS = {"0.5-2": (0.5, 2.0), "0.1-2.4": (0.1, 2.4)}
CONF_SIGMA = {90: 1.6448536269514722, 68: 1.0, 95: 1.959963984540054, 99: 2.5758293035489004}


@dataclass
class FitOptions:
    model: str = "tbabs*(apec+powerlaw)"
    nh: float | None = None
    nh_free: bool = False
    redshift: float | None = None
    abund_table: str = "aspl"
    stat: str = "cstat"
    no_background: bool = False
    emin: float = 0.5
    emax: float = 7.0
    freeze: list = field(default_factory=list)
    set_values: dict = field(default_factory=dict)
    engine: str = "auto"
    cameras: tuple = ("mos1", "mos2", "pn")
    conf: int = 90
    flux_draws: int = 200
    seed: int = 1
    goodness: int = 0
    rmf: dict | None = None         # {camera: file} overriding RESPFILE
    arf: dict | None = None         # {camera: file} overriding ANCRFILE
    bkg: dict | None = None         # {camera: file} overriding BACKFILE

    def validate(self) -> None:
        if self.stat not in ("cstat", "wstat", "chi2"):
            raise UsageError(f"--stat must be cstat, wstat or chi2, got {self.stat!r}")
        if not (math.isfinite(self.emin) and math.isfinite(self.emax) and 0 <= self.emin < self.emax):
            raise UsageError(f"empty energy range {self.emin}-{self.emax} keV")
        if self.conf not in CONF_SIGMA:
            raise UsageError(f"--conf must be one of {sorted(CONF_SIGMA)}")
        if self.engine not in ("auto", "sherpa", "pyxspec"):
            raise UsageError("--engine must be auto, sherpa or pyxspec")
        if self.goodness < 0:
            raise UsageError(f"--goodness takes a number of simulations >= 0, got {self.goodness}")
        if self.abund_table not in xm.ABUNDANCE_TABLES:
            raise UsageError(f"unknown abundance table {self.abund_table!r}")


# --- sherpa models over XSPEC's library -------------------------------------------------------
def _sherpa_component(comp):
    """A sherpa ArithmeticModel evaluating one XSPEC component through the compiled library."""
    from sherpa.models.model import ArithmeticModel
    from sherpa.models.parameter import Parameter

    md = comp.definition

    class XSComponent(ArithmeticModel):
        def __init__(self):
            pars = []
            for p in md.params:
                lo = p.hard_min if p.hard_min < p.hard_max else -1e30
                hi = p.hard_max if p.hard_min < p.hard_max else 1e30
                par = Parameter(comp.name, p.name, p.default, min=max(p.soft_min, lo) if p.soft_min < p.soft_max else lo,
                                max=min(p.soft_max, hi) if p.soft_min < p.soft_max else hi, hard_min=lo, hard_max=hi,
                                units=p.unit, frozen=p.frozen)
                setattr(self, p.name, par)
                pars.append(par)
            if md.kind == "add":
                # soft range 0..1e3 keeps error searches finite when a component is unconstrained
                self.norm = Parameter(comp.name, "norm", 1.0, min=0.0, max=1e3, hard_min=0.0, hard_max=1e24)
                pars.append(self.norm)
            self.grids = EnergyGridCache(md.name)
            ArithmeticModel.__init__(self, comp.name, pars)

        def calc(self, p, xlo, xhi=None, *args, **kwargs):
            if xhi is None:
                raise UsageError(f"{md.name}: XSPEC models need binned (integrated) energy grids")
            npar = len(md.params)
            out = self.grids.evaluate(tuple(p[:npar]), np.asarray(xlo, float), np.asarray(xhi, float))
            return out * p[npar] if md.kind == "add" else out

    return XSComponent()


class EnergyGridCache:
    """Evaluations of one XSPEC model on the responses' full energy grids, re-used.

    sherpa asks a model for the energies each data set's noticed channels need: a
    different subset of the same response grid per camera, so a plain last-call cache
    misses on every camera. The full grids are registered once (:meth:`register`); a
    request that is a subset of one is answered from one evaluation per parameter set
    and grid, i.e. once per statistic evaluation instead of once per camera.
    """

    def __init__(self, name: str, max_values: int = 8):
        self.name = name
        self.grids: list[np.ndarray] = []
        self.max_values = max_values
        self._subsets: dict = {}
        self._values: dict = {}

    def register(self, edges: np.ndarray) -> None:
        edges = np.asarray(edges, float)
        if not any(len(g) == len(edges) and np.array_equal(g, edges) for g in self.grids):
            self.grids.append(edges)
            self._subsets.clear()

    def _subset(self, xlo: np.ndarray, xhi: np.ndarray):
        key = (xlo.tobytes(), xhi.tobytes())
        if key not in self._subsets:
            found = None
            for g, edges in enumerate(self.grids):
                i = np.searchsorted(edges, xlo)
                if np.all(i < len(edges) - 1) and np.array_equal(edges[i], xlo) and np.array_equal(edges[i + 1], xhi):
                    found = (g, i)
                    break
            self._subsets[key] = found
        return self._subsets[key]

    def evaluate(self, pars: tuple, xlo: np.ndarray, xhi: np.ndarray) -> np.ndarray:
        sub = self._subset(xlo, xhi) if self.grids else None
        if sub is None:
            return evaluate_on_bins(self.name, np.asarray(pars, float), xlo, xhi)
        g, idx = sub
        key = (g, pars)
        vals = self._values.get(key)
        if vals is None:
            if len(self._values) >= self.max_values:
                self._values.clear()
            vals = self._values[key] = xm.evaluate(self.name, np.asarray(pars, float), self.grids[g])
        return vals[idx]


def register_energy_grids(comps: dict, grids) -> None:
    """Tell every component the full response energy grids (edges) of the data sets."""
    for obj in comps.values():
        for edges in grids:
            obj.grids.register(edges)


def evaluate_on_bins(name: str, pars: np.ndarray, xlo: np.ndarray, xhi: np.ndarray) -> np.ndarray:
    """XSPEC model values on bins [xlo, xhi] that may be non-contiguous (sherpa evaluates
    only the energies its noticed channels need): evaluate on the merged edges, then
    take the requested bins."""
    if len(xlo) > 1 and np.array_equal(xlo[1:], xhi[:-1]):
        return xm.evaluate(name, pars, np.append(xlo, xhi[-1]))
    edges = np.unique(np.concatenate([xlo, xhi]))
    vals = xm.evaluate(name, pars, edges)
    i = np.searchsorted(edges, xlo)
    j = np.searchsorted(edges, xhi)
    if np.all(j == i + 1):
        return vals[i]
    cum = np.concatenate([[0.0], np.cumsum(vals)])       # a requested bin spanning several
    return cum[j] - cum[i]


def build_sherpa_model(expr: ModelExpression):
    """The sherpa model object for the expression and {component name: sherpa component}."""
    objs = {c.name: _sherpa_component(c) for c in expr.components}

    def build(node):
        if node.op == "comp":
            return objs[node.component.name]
        parts = [build(k) for k in node.children]
        out = parts[0]
        for p in parts[1:]:
            out = out * p if node.op == "*" else out + p
        return out
    return build(expr.tree), objs


# --- engine choice -----------------------------------------------------------------------------
def choose_engine(requested: str) -> str:
    have_pyxspec = importlib.util.find_spec("xspec") is not None
    if requested == "pyxspec" and not have_pyxspec:
        raise DependencyError("--engine pyxspec but PyXspec is not importable (initialise HEASoft)")
    if requested == "auto":
        return "pyxspec" if have_pyxspec else "sherpa"
    return requested


def find_spectra(input_dir: Path, cameras) -> list[tuple[str, Path]]:
    """Grouped source spectra <cam>_src_grp.pha (else <cam>_src.pha) in ``input_dir``;
    ``input_dir`` may also be one PHA file, or several separated by commas (any names,
    e.g. SAS's own), the camera then read from INSTRUME."""
    from .instrument import INSTRUME_TO_CAMERA
    parts = [Path(p) for p in str(input_dir).split(",") if p]
    if parts and all(p.is_file() for p in parts):
        found = []
        for p in parts:
            cam = INSTRUME_TO_CAMERA.get(read_pha(p).instrument.upper())
            if cam is None:
                raise UsageError("INSTRUME of the spectrum is not EMOS1, EMOS2 or EPN", p)
            found.append((cam, p))
        return found
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise UsageError("spectra folder not found (run step 3, spectral_analysis.py)", input_dir)
    found = []
    for cam in cameras:
        for name in (f"{cam}_src_grp.pha", f"{cam}_src.pha"):
            if (input_dir / name).exists():
                found.append((cam, input_dir / name))
                break
    if not found:
        raise UsageError("no <cam>_src_grp.pha or <cam>_src.pha in the spectra folder", input_dir)
    return found


def resolve_files(cam: str, path: Path, opts: FitOptions) -> dict:
    """RESPFILE/ANCRFILE/BACKFILE of a spectrum as files that exist, or None.

    Order: the user's ``--rmf/--arf/--bkg cam=FILE``; the header's path (relative to the
    spectrum); a file of that name next to the spectrum (SAS writes the paths of the
    folder it ran in). ``BACKFILE = 'none'`` (OGIP: no background) gives None; a
    response or background named but found nowhere is an error (exit 2) saying so."""
    s = read_pha(path)
    user = {"RESPFILE": opts.rmf, "ANCRFILE": opts.arf, "BACKFILE": opts.bkg}
    flag = {"RESPFILE": "--rmf", "ANCRFILE": "--arf", "BACKFILE": "--bkg"}
    out = {}
    for key in ("RESPFILE", "ANCRFILE", "BACKFILE"):
        given = (user[key] or {}).get(cam)
        if given:
            if not Path(given).is_file():
                raise UsageError(f"{cam}: {flag[key]} file not found", Path(given))
            out[key] = Path(given)
            continue
        named = s.files.get(key)
        if named is None:
            out[key] = None
            continue
        beside = path.parent / named.name
        if named.exists():
            out[key] = named
        elif beside.exists():
            out[key] = beside
        elif key == "BACKFILE" and opts.no_background:
            out[key] = None
        else:
            raise UsageError(f"{cam}: {key} {named.name} does not exist next to the spectrum; "
                             f"give {flag[key]} {cam}=FILE" + (" or --no-background" if key == "BACKFILE" else ""),
                             path)
    return out


def check_spectrum(cam: str, path: Path, opts: FitOptions) -> dict:
    """Fail early, with the file named, on what would make a fit meaningless; return
    the resolved response and background files."""
    s = read_pha(path)
    files = resolve_files(cam, path, opts)
    if files["RESPFILE"] is None:
        raise UsageError(f"{cam}: the spectrum names no RMF (RESPFILE); give --rmf {cam}=FILE", path)
    if s.counts.sum() <= 0:
        raise DataError(f"{cam}: the spectrum has zero counts", path)
    return files


# --- the sherpa fit -----------------------------------------------------------------------------
def fit_sherpa(spectra: list[tuple[str, Path]], expr: ModelExpression, opts: FitOptions) -> dict:
    """Joint fit with sherpa; returns the fit.json content (without file names)."""
    import logging as _logging
    from sherpa.astro import ui
    _logging.getLogger("sherpa").setLevel(_logging.WARNING)
    ui.clean()
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
            c = ui.scale1d(f"cross_norm_{cam}")   # not integrated over the bin (const1d is)
            c.c0 = 1.0
            c.c0.min, c.c0.max = 0.2, 5.0
            cross[cam] = c
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
    more_notes, undetected = _freeze_undetected(expr, comps, ids)
    notes.extend(more_notes)
    fr = ui.get_fit_results()
    free = [p for p in _all_pars(comps, cross) if not p.frozen]
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
        "fluxes": fluxes, "notes": notes,
    }
    if stat == "chi2datavar" and fr.dof > 0:
        from scipy.stats import chi2 as chi2_dist
        result["statistic"]["null_hypothesis_probability"] = float(chi2_dist.sf(fr.statval, fr.dof))
    if goodness is not None:
        result["goodness"] = goodness
    return result


def _load_spectrum(ui, i: int, cam: str, path: Path, files: dict, opts: FitOptions) -> list[str]:
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


def _goodness(ids, free, undetected, opts: FitOptions) -> dict:
    """--goodness N: simulated goodness (undetected norms held at their best fit, as in
    the error searches)."""
    from .goodness import simulated_goodness
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
    from sherpa.astro import ui
    rmf = ui.get_rmf(data_id)
    return np.append(rmf.energ_lo, rmf.energ_hi[-1])


UNDETECTED_SHAPE = {"PhoIndex": 1.4, "kT": None}   # conventional index of a residual power law


def _scale_start_norms(expr, comps, data_id) -> None:
    """Scale the additive norms together so the starting model predicts the observed net
    counts of the first spectrum: the optimiser then starts near the answer."""
    from sherpa.astro import ui
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
    from sherpa.astro import ui
    ui.set_method("levmar")
    ui.fit(*ids)
    ui.fit(*ids)


def _freeze_undetected(expr, comps, ids) -> tuple[list[str], list]:
    """A component whose removal (norm fixed at 0, the rest refitted) raises the statistic
    by less than 1 (i.e. it is not detected at 1 sigma) cannot constrain its shape: freeze
    the shape (power-law index at 1.4, others at their best fit) and refit. Returns the
    notes and the norms of those components (their intervals are upper limits).

    A likelihood-ratio test rather than the covariance: with a norm near its bound at zero
    the numerical Hessian is often not positive definite."""
    from sherpa.astro import ui
    notes, undetected = [], []
    adds = [c for c in expr.components if c.kind == "add"]
    if len(adds) < 2:
        return notes, undetected
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
            delta = ui.calc_stat(*ids) - stat_best
        finally:
            obj.norm.frozen = False
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
    if notes:
        _minimise(ids)
    return notes, undetected


def _confidence(ids, free, undetected, level: int) -> dict:
    """Profile-likelihood intervals (sherpa ``conf``) at ``level`` percent: {name: (lo, hi)}.

    The norm of an undetected component sits on its bound at zero; left free, every refit
    of a profile search would touch that bound (where LM stalls and each refit needs a
    simplex of hundreds of evaluations). So the other parameters' intervals are computed
    with those norms fixed at their best fit, and each such norm gets its own search (an
    upper limit) with everything else free.
    """
    import multiprocessing
    from sherpa.astro import ui
    ui.set_method("levmar")
    ui.set_conf_opt("sigma", CONF_SIGMA[level])
    ui.set_conf_opt("soft_limits", True)     # stop a search at the parameter's soft limit
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
            "frozen": bool(par.frozen), "unit": par.units or ""}


def _covariance(ids, free):
    from sherpa.astro import ui
    try:
        ui.covar(*ids, *free)
        r = ui.get_covar_results()
        cov = np.asarray(r.extra_output, float)
        if cov.shape != (len(free), len(free)) or not np.all(np.isfinite(cov)):
            return [], None
        names = []
        for p in free:
            comp, pname = p.fullname.split(".", 1)
            names.append(f"cross_norm.{comp[len('cross_norm_'):]}" if comp.startswith("cross_norm_") else f"{comp}.{pname}")
        return names, cov
    except Exception as exc:          # covariance can fail at a limit; fluxes then have no errors
        log.warning("covariance matrix not available (%s): flux errors omitted", exc)
        return [], None


def _apply_defaults(expr: ModelExpression, comps, opts: FitOptions) -> None:
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
            elif pname == "kT" and low in ("apec", "bremss", "mekal", "vapec"):
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
def model_photon_flux(expr: ModelExpression, values: dict, edges: np.ndarray, unabsorbed: bool = False) -> np.ndarray:
    """Photons/cm^2/s per bin of the source model (no cross-normalisation)."""
    def ev(node):
        if node.op == "comp":
            c = node.component
            pv = [values[f"{c.name}.{p.name}"] for p in c.definition.params]
            if c.kind == "mul" and unabsorbed and c.xspec_name.lower() in ABSORBERS:
                return np.ones(len(edges) - 1)
            out = xm.evaluate(c.xspec_name, pv, edges)
            return out * values[f"{c.name}.norm"] if c.kind == "add" else out
        parts = [ev(k) for k in node.children]
        out = parts[0]
        for p in parts[1:]:
            out = out * p if node.op == "*" else out + p
        return out
    return ev(expr.tree)


def energy_flux(expr, values, band, unabsorbed=False) -> float:
    lo, hi = band
    edges = np.linspace(lo, hi, int((hi - lo) / 0.005) + 1)
    mid = 0.5 * (edges[:-1] + edges[1:])
    return float(np.sum(model_photon_flux(expr, values, edges, unabsorbed) * mid) * KEV_TO_ERG)


def flux_table(expr, values, cov_names, cov, opts: FitOptions) -> dict:
    """Absorbed/unabsorbed energy fluxes (erg/cm^2/s) with errors from parameter draws,
    and luminosities (erg/s, observed band, no K-correction) when a redshift is set."""
    rng = np.random.default_rng(opts.seed)
    draws = []
    if cov is not None and len(cov_names):
        mean = np.array([values[n] for n in cov_names])
        try:
            samples = rng.multivariate_normal(mean, cov, size=opts.flux_draws, check_valid="ignore")
        except (ValueError, np.linalg.LinAlgError):
            samples = np.empty((0, len(cov_names)))
        for s in samples:
            v = dict(values)
            v.update({n: float(x) for n, x in zip(cov_names, s)})
            if all(v[n] > 0 for n in cov_names if n.endswith("norm") or n.endswith(".kT")):
                draws.append(v)
    z = values.get(next((k for k in values if k.lower().endswith(".redshift")), ""), None)
    if opts.redshift is not None:
        z = opts.redshift
    dl_cm = None
    if z and z > 0:
        from astropy.cosmology import Planck18
        dl_cm = Planck18.luminosity_distance(z).to("cm").value
    q_lo, q_hi = 50 - opts.conf / 2, 50 + opts.conf / 2
    out = {}
    for band_name, band in FLUX_BANDS.items():
        for kind, unabs in (("absorbed", False), ("unabsorbed", True)):
            best = energy_flux(expr, values, band, unabs)
            rec = {"value": best, "lower": None, "upper": None, "unit": "erg/cm2/s", "n_draws": len(draws)}
            if draws:
                f = np.array([energy_flux(expr, d, band, unabs) for d in draws])
                rec["lower"], rec["upper"] = float(np.percentile(f, q_lo)), float(np.percentile(f, q_hi))
            out[f"{band_name}keV_{kind}"] = rec
            if dl_cm is not None and unabs:
                lum = {k: (None if rec[k] is None else rec[k] * 4 * math.pi * dl_cm ** 2)
                       for k in ("value", "lower", "upper")}
                out[f"{band_name}keV_luminosity"] = dict(lum, unit="erg/s", redshift=z,
                                                         cosmology="Planck18, observed band, no K-correction")
    return out


# --- PyXspec ----------------------------------------------------------------------------------------
def pyxspec_script(spectra: list[tuple[str, Path]], expr: ModelExpression, opts: FitOptions) -> list[str]:
    """The PyXspec statements for the same joint fit (executed when PyXspec imports)."""
    conf_delta = {90: 2.706, 68: 1.0, 95: 3.841, 99: 6.635}[opts.conf]
    lines = ["import xspec",
             "xspec.Xset.chatter = 0",
             f"xspec.Xset.abund = {opts.abund_table!r}",
             "xspec.Xset.xsect = 'vern'",
             "xspec.AllData.clear()",
             "xspec.AllModels.clear()",
             f"xspec.AllData({' '.join(f'{i}:{i} {p}' for i, (_, p) in enumerate(spectra, 1))!r})"]
    if opts.no_background:
        lines += [f"xspec.AllData({i}).background = None" for i in range(1, len(spectra) + 1)]
    lines += [f"xspec.AllData.ignore('**-{opts.emin} {opts.emax}-**')", "xspec.AllData.ignore('bad')",
              f"m = xspec.Model({('constant*' + expr.xspec_string())!r})"]
    npar_total = 1 + len(expr.parameters())
    lines.append("m.setPars({1: '1 -1'})")
    idx = 2
    for c in expr.components:
        for p in c.parameter_names():
            low = p.lower()
            if low == "nh" and c.xspec_name.lower() in ABSORBERS and opts.nh is not None:
                frozen = not opts.nh_free
                lines.append(f"m.setPars({{{idx}: '{opts.nh} {'-1' if frozen else '0.01'}'}})")
            elif low == "redshift" and opts.redshift is not None:
                lines.append(f"m.setPars({{{idx}: '{opts.redshift} -1'}})")
            elif low.startswith("abundanc"):
                lines.append(f"m({idx}).frozen = False")
            idx += 1
    for i in range(2, len(spectra) + 1):
        lines.append(f"xspec.AllModels({i})(1).untie()")
        lines.append(f"xspec.AllModels({i})(1).frozen = False")
    stat = "cstat" if opts.stat in ("cstat", "wstat") else "chi"
    lines += [f"xspec.Fit.statMethod = {stat!r}", "xspec.Fit.query = 'yes'", "xspec.Fit.nIterations = 1000",
              "xspec.Fit.perform()",
              f"xspec.Fit.error('maximum 1000 {conf_delta} 2-{npar_total}')"]
    if opts.goodness:
        # percentage of simulations with a statistic below the data's, each refitted
        lines.append(f"goodness_percent = xspec.Fit.goodness({opts.goodness}, sim=False, fit=True)")
    return lines


def run_pyxspec(spectra, expr, opts) -> dict:
    """Execute the PyXspec script and read back values and errors."""
    ns: dict = {}
    exec("\n".join(pyxspec_script(spectra, expr, opts)), ns)   # noqa: S102 - our own statements
    xspec = ns["xspec"]
    m = ns["m"]
    params, idx = {}, 2
    for c in expr.components:
        for pname in c.parameter_names():
            par = m(idx)
            lo, hi = par.error[0], par.error[1]
            params[f"{c.name}.{pname}"] = {"value": par.values[0], "lower": None if par.frozen else lo,
                                           "upper": None if par.frozen else hi, "frozen": bool(par.frozen),
                                           "unit": par.unit}
            idx += 1
    values = {k: v["value"] for k, v in params.items()}
    goodness = ({"method": "XSPEC goodness (nosim, refitted)", "n_simulations": opts.goodness,
                 "percent_below_observed": float(ns["goodness_percent"])} if "goodness_percent" in ns else None)
    return {"engine": "pyxspec", "goodness": goodness, "model": expr.text, "model_xspec": expr.xspec_string(),
            "statistic": {"name": xspec.Fit.statMethod, "value": xspec.Fit.statistic, "dof": xspec.Fit.dof},
            "parameters": params, "conf_level": opts.conf, "energy_range_keV": [opts.emin, opts.emax],
            "abund_table": opts.abund_table, "spectra": [{"camera": c, "file": str(p)} for c, p in spectra],
            "fluxes": flux_table(expr, values, [], None, opts)}


# --- outputs ----------------------------------------------------------------------------------------
def xcm_text(result: dict, expr: ModelExpression, opts: FitOptions, full_paths: bool = False) -> str:
    """An XSPEC command file that reloads the data and the fitted model (@fit.xcm).

    File names are relative to the spectra folder (run XSPEC there), or absolute with
    ``full_paths`` (joint fits of spectra from several folders)."""
    stat = "cstat" if opts.stat in ("cstat", "wstat") else "chi"
    lines = [f"statistic {stat}", "method leven 10 0.01", f"abund {opts.abund_table}", "xsect vern",
             "cosmo 67.7 0 0.689", "xset delta 0.01", "systematic 0"]
    files = [str(s["file"]) if full_paths else Path(s["file"]).name for s in result["spectra"]]
    lines.append("data " + " ".join(f"{i}:{i} {f}" for i, f in enumerate(files, 1)))
    if opts.no_background:
        lines += [f"back {i} none" for i in range(1, len(files) + 1)]
    lines.append("ignore " + " ".join(f"{i}:**-{opts.emin} {opts.emax}-**" for i in range(1, len(files) + 1)))
    lines.append("ignore bad")
    lines.append(f"model  constant*{expr.xspec_string()}")
    pars = result["parameters"]
    cams = [s["camera"] for s in result["spectra"]]

    def par_line(name, fixed_val=None):
        rec = pars[name]
        v = rec["value"] if fixed_val is None else fixed_val
        delta = -1 if rec["frozen"] or fixed_val is not None else max(abs(v) * 0.01, 1e-4)
        return f"{v:14.6g} {delta:10.4g}"
    n_model = len(expr.parameters())
    lines.append(f"{1.0:14.6g} {-1:10.4g}")                     # constant of data group 1
    for name in expr.parameters():
        lines.append(par_line(name))
    for k, cam in enumerate(cams[1:], start=2):
        cn = pars.get(f"cross_norm.{cam}", {"value": 1.0})["value"]
        lines.append(f"{cn:14.6g} {0.01:10.4g}")
        for j in range(n_model):
            lines.append(f"= p{j + 2}")
    return "\n".join(lines) + "\n"


def csv_text(result: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["parameter", "value", "lower", "upper", "frozen", "unit"])
    for name, r in result["parameters"].items():
        w.writerow([name, r["value"], r["lower"], r["upper"], r["frozen"], r["unit"]])
    st = result["statistic"]
    w.writerow(["statistic", st["value"], "", "", "", st["name"]])
    w.writerow(["dof", st["dof"], "", "", "", ""])
    for name, f in result["fluxes"].items():
        w.writerow([f"flux.{name}", f["value"], f["lower"], f["upper"], "", f["unit"]])
    w.writerow(["engine", result["engine"], "", "", "", ""])
    w.writerow(["model", result["model"], "", "", "", ""])
    w.writerow(["energy_range_keV", f"{result['energy_range_keV'][0]}-{result['energy_range_keV'][1]}", "", "", "", ""])
    for s in result["spectra"]:
        w.writerow([f"spectrum.{s['camera']}", s["file"], "", "", "", ""])
    return buf.getvalue()


def plot_fit(dest: Path, n_spectra: int, labels: list[str]) -> None:
    """Folded spectra with model and residuals (from sherpa's current session)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sherpa.astro import ui
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
    for i in range(1, n_spectra + 1):
        color = f"C{i - 1}"
        # W-stat models only the source: show background-subtracted data against it
        subtracted = bool(ui.get_data(i).background_ids) and not ui.get_data(i).subtracted
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
    ax.set_title("Folded spectra (background subtracted) and best-fit model")
    axr.axhline(0, color="k", lw=0.8)
    axr.set_ylabel("(data-model)/error")
    axr.set_xlabel("energy (keV)")
    fig.tight_layout()
    save_figure(dest, fig)
    plt.close(fig)


def run_fit(input_dir: Path, output_dir: Path, opts: FitOptions) -> dict:
    """Run step 4 on the spectra in ``input_dir``; write outputs in ``output_dir``."""
    opts.validate()
    from .fileio import remove_stale_parts
    remove_stale_parts(output_dir)            # leftovers of a killed run
    expr = parse_model(opts.model)
    spectra = find_spectra(input_dir, opts.cameras)
    for cam, path in spectra:
        check_spectrum(cam, path, opts)
    thermal = needs_atomdb([c.xspec_name for c in expr.components])
    if thermal:
        if find_apec_files() is None:
            raise DependencyError(missing_data_message(thermal[0]))
        configure_xspec()
    engine = choose_engine(opts.engine)
    if engine == "pyxspec":
        result = run_pyxspec(spectra, expr, opts)
    else:
        result = fit_sherpa(spectra, expr, opts)
    output_dir = Path(output_dir)
    write_json(output_dir / "fit.json", result)
    write_text(output_dir / "fit.csv", csv_text(result))
    write_text(output_dir / "fit.xcm", xcm_text(result, expr, opts))
    write_text(output_dir / "fit_pyxspec.py", "\n".join(pyxspec_script(spectra, expr, opts)) + "\n")
    if engine == "sherpa":
        plot_fit(output_dir / "fit.png", len(spectra), [c for c, _ in spectra])
    return result


# --- command line -------------------------------------------------------------------------------------
def _parse_set(values: list[str] | None) -> dict:
    out = {}
    for v in values or []:
        if "=" not in v:
            raise UsageError(f"--set takes component.par=value, got {v!r}")
        k, val = v.split("=", 1)
        try:
            out[k.strip()] = float(val)
        except ValueError:
            raise UsageError(f"--set {k}: {val!r} is not a number") from None
    return out


def _per_camera_files(values: list[str] | None, flag: str) -> dict | None:
    """['mos1=F', ...] -> {'mos1': 'F'} (exit 2 on a malformed entry or an unknown camera)."""
    if not values:
        return None
    out = {}
    for v in values:
        cam, sep, f = v.partition("=")
        if not sep or cam.strip().lower() not in ("mos1", "mos2", "pn") or not f:
            raise UsageError(f"{flag} takes CAM=FILE with CAM mos1, mos2 or pn, got {v!r}")
        out[cam.strip().lower()] = f
    return out


def main(argv=None) -> int:
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from .cli import base_parser, setup_logging
    from .layout import parse_cameras
    p = base_parser("xspec_analysis.py", "Step 4: tbabs*(apec+powerlaw) fits with PyXspec or sherpa.")
    p.add_argument("--input", required=True,
                   help="spectra folder, e.g. results/<OBSID>/spectra, or PHA files (any names) separated by commas")
    p.add_argument("--rmf", action="append", metavar="CAM=FILE", help="RMF for a camera (overrides RESPFILE)")
    p.add_argument("--arf", action="append", metavar="CAM=FILE", help="ARF for a camera (overrides ANCRFILE)")
    p.add_argument("--bkg", action="append", metavar="CAM=FILE", help="background for a camera (overrides BACKFILE)")
    p.add_argument("--output", help="output folder (default: <input>/../fit)")
    p.add_argument("--model", default="tbabs*(apec+powerlaw)", help="XSPEC model expression")
    p.add_argument("--nh", type=float, help="absorbing column (1e22 cm^-2), frozen (Galactic)")
    p.add_argument("--nh-free", action="store_true", help="fit nH instead of freezing it")
    p.add_argument("--redshift", type=float, help="redshift (frozen)")
    p.add_argument("--abund-table", default="aspl", help="aspl (default), angr, wilm, ...")
    p.add_argument("--stat", default="cstat", help="cstat (W-stat with background), wstat or chi2")
    p.add_argument("--no-background", action="store_true", help="ignore the background spectra")
    p.add_argument("--emin", type=float, default=0.5)
    p.add_argument("--emax", type=float, default=7.0)
    p.add_argument("--freeze", action="append", default=[], help="component.par to freeze (repeatable)")
    p.add_argument("--set", action="append", help="component.par=value (repeatable)")
    p.add_argument("--engine", default="auto", help="auto, pyxspec or sherpa")
    p.add_argument("--cameras", default="mos1,mos2,pn")
    p.add_argument("--conf", type=int, default=90, help="confidence level of errors: 90 (default), 68, 95, 99")
    p.add_argument("--goodness", type=int, default=0, metavar="N",
                   help="simulated goodness of fit from N refitted realisations (cstat/W-stat)")
    args = p.parse_args(argv)
    setup_logging(args.debug, args.quiet)
    opts = FitOptions(model=args.model, nh=args.nh, nh_free=args.nh_free, redshift=args.redshift,
                      abund_table=args.abund_table, stat=args.stat, no_background=args.no_background,
                      emin=args.emin, emax=args.emax, freeze=args.freeze, set_values=_parse_set(args.set),
                      engine=args.engine, cameras=tuple(parse_cameras(args.cameras)), conf=args.conf,
                      goodness=args.goodness, rmf=_per_camera_files(args.rmf, "--rmf"),
                      arf=_per_camera_files(args.arf, "--arf"), bkg=_per_camera_files(args.bkg, "--bkg"))
    inp = Path(args.input)
    first = Path(args.input.split(",")[0])
    out = Path(args.output) if args.output else (
        first.resolve().parent / "fit" if first.is_file() else inp.resolve().parent / "fit")
    res = run_fit(inp, out, opts)
    st = res["statistic"]
    print(f"fit ({res['engine']}): {st['name']} = {st['value']:.1f} for {st['dof']} dof -> {out}")
    for name, r in res["parameters"].items():
        if not r["frozen"]:
            lo = "?" if r["lower"] is None else f"{r['lower']:.4g}"
            hi = "?" if r["upper"] is None else f"{r['upper']:.4g}"
            print(f"  {name:<22} {r['value']:.4g}  ({opts.conf}%: {lo} .. {hi})")
    g = res.get("goodness")
    if g and g.get("n_simulations"):
        print(f"  goodness: {g['percent_below_observed']:.0f}% of {g['n_simulations']} refitted simulations "
              f"have a lower statistic (p = {g['p_value']:.2f})")
    return 0
