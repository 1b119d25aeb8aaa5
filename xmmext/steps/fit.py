"""Step 4: joint fits of the cameras' spectra, e.g. tbabs*(apec+powerlaw) (``xspec_analysis.py``).

Options: :class:`FitOptions`. Inputs: the spectra (``--input``: a folder or PHA files)
and every file their headers name (RMF, ARF, background) or the user gives. Outputs in
the output folder (default <input>/../fit): fit.csv, fit.xcm, fit_pyxspec.py, fit.png;
record fit.json (written last). Engine chosen once in the plan: pyxspec when HEASoft's
PyXspec imports, else sherpa. The work: :mod:`xmmext.fitting`.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import xmmext.xspec.library as xm
from xmmext.core.errors import DependencyError, UsageError
from xmmext.core.paths import CAMERAS
import xmmext.core.values as V
from xmmext.steps.base import Plan, Step, StepResult, finish_plan, option

__all__ = ["CONF_LEVELS", "BACKGROUNDS", "MAX_NH", "MAX_REDSHIFT", "FitOptions", "choose_engine", "FitStep",
           "main"]

CONF_LEVELS = (68, 90, 95, 99)
BACKGROUNDS = ("auto", "local", "annulus", "model", "none")
MAX_NH = 1000.0            # 1e25 cm^-2: beyond any column that leaves X-rays to fit
MAX_REDSHIFT = 10.0


MAX_GOODNESS = 10000          # refits of simulated spectra: 10^4 take ~1-3 h already


@dataclass
class FitOptions:
    """Step-4 settings."""
    input: str | None = option(None, "spectra folder (e.g. results/<OBSID>/spectra), or PHA files of any "
                               "names separated by commas", pipeline=False, fingerprint=False)
    output: str | None = option(None, "output folder (default: <input>/../fit)", pipeline=False, fingerprint=False)
    model: str | None = option(None, "XSPEC model expression (default: tbabs*(apec+powerlaw); without AtomDB "
                               "tbabs*(zbremss+powerlaw), said in fit.json)", metavar="EXPR")
    nh: float | None = option(None, "absorbing column (1e22 cm^-2), frozen (the Galactic value)",
                              parse=V.non_negative_float)
    nh_free: bool = option(False, "fit nH instead of freezing it", switch=True)
    redshift: float | None = option(None, "source redshift (frozen)", parse=V.non_negative_float)
    abund_table: str = option("aspl", "abundance table", choices=sorted(xm.ABUNDANCE_TABLES))
    stat: str = option("cstat", "cstat (W-stat with a background), wstat or chi2", choices=["cstat", "wstat", "chi2"])
    background: str = option("auto", "background: auto (local, or model when step 1 found residual soft protons), local (the background annulus subtracted, the source's own emission in it predicted from the beta model and left in), annulus (the plain annulus subtraction), model (source, background and corner spectra fitted together: particles, soft protons, sky and the source's own emission modelled), none", choices=list(BACKGROUNDS))
    emin: float = option(0.5, "lower end of the fitted band (keV)", parse=V.non_negative_float)
    emax: float = option(7.0, "upper end of the fitted band (keV)", parse=V.positive_float)
    freeze: list = option(help="component.par to freeze (repeatable)", factory=list, multiple=True,
                          collect=list, metavar="COMP.PAR")
    set_values: dict = option(help="component.par=value (repeatable)", factory=dict, flag="--set",
                              parse=V.parameter_value, multiple=True, collect=dict, metavar="COMP.PAR=VALUE")
    engine: str = option("auto", "fitting engine: auto (pyxspec when importable, else sherpa), pyxspec, sherpa",
                         choices=["auto", "pyxspec", "sherpa"])
    cameras: tuple = option(CAMERAS, "cameras to fit (subset of mos1,mos2,pn)", parse=V.cameras)
    conf: int = option(90, "confidence level of the errors (%)", parse=int, choices=list(CONF_LEVELS))
    goodness: int = option(0, "simulated goodness of fit from N refitted realisations (cstat/W-stat)",
                           parse=V.non_negative_int, metavar="N")
    rmf: dict | None = option(None, "RMF for a camera, overriding RESPFILE", parse=V.camera_file, multiple=True,
                              collect=V.per_camera, metavar="CAM=FILE", pipeline=False)
    arf: dict | None = option(None, "ARF for a camera, overriding ANCRFILE", parse=V.camera_file, multiple=True,
                              collect=V.per_camera, metavar="CAM=FILE", pipeline=False)
    bkg: dict | None = option(None, "background for a camera, overriding BACKFILE", parse=V.camera_file,
                              multiple=True, collect=V.per_camera, metavar="CAM=FILE", pipeline=False)
    flux_draws: int = field(default=200)          # parameter draws for the flux errors
    seed: int = field(default=1)

    def validate(self) -> None:
        if self.model is not None and not str(self.model).strip():
            raise UsageError("--model is empty")
        if self.nh is not None:
            V.check(self, "nh", V.non_negative_float)
            if self.nh > MAX_NH:
                raise UsageError(f"--nh {self.nh:g} (1e22 cm^-2) is beyond {MAX_NH:g}: no X-rays would be left")
        if self.redshift is not None:
            V.check(self, "redshift", V.non_negative_float)
            if self.redshift > MAX_REDSHIFT:
                raise UsageError(f"--redshift {self.redshift:g} is beyond {MAX_REDSHIFT:g}")
        V.check(self, "emin", V.non_negative_float)
        V.check(self, "emax", V.positive_float)
        if self.emin >= self.emax:
            raise UsageError(f"empty energy range {self.emin}-{self.emax} keV")
        if self.stat not in ("cstat", "wstat", "chi2"):
            raise UsageError(f"--stat must be cstat, wstat or chi2, got {self.stat!r}")
        if self.conf not in CONF_LEVELS:
            raise UsageError(f"--conf must be one of {', '.join(map(str, CONF_LEVELS))}")
        if self.background not in BACKGROUNDS:
            raise UsageError(f"--background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        if self.background == "model" and self.stat != "cstat":
            raise UsageError("--background model fits every region's counts with cstat: drop --stat")
        if self.engine not in ("auto", "sherpa", "pyxspec"):
            raise UsageError("--engine must be auto, sherpa or pyxspec")
        if not 0 <= self.goodness <= MAX_GOODNESS:
            raise UsageError(f"--goodness takes a number of simulations from 0 to {MAX_GOODNESS} "
                             f"(each is a refit), got {self.goodness}")
        if self.abund_table not in xm.ABUNDANCE_TABLES:
            raise UsageError(f"unknown abundance table {self.abund_table!r}")
        for k, v in self.set_values.items():
            if not math.isfinite(float(v)):
                raise UsageError(f"--set {k}: not a finite number")
        self.cameras = V.camera_tuple(self.cameras)
        self.rmf, self.arf, self.bkg = V.per_camera(self.rmf), V.per_camera(self.arf), V.per_camera(self.bkg)

    @property
    def no_background(self) -> bool:
        """--background none: the spectra fitted without their background."""
        return self.background == "none"

    def folders(self) -> tuple[Path, Path]:
        """(where the spectra are, where the fit goes)."""
        if not self.input:
            raise UsageError("--input is required: a spectra folder or PHA files separated by commas")
        first = Path(str(self.input).split(",")[0])
        default = first.resolve().parent / "fit" if first.is_file() else Path(self.input).resolve().parent / "fit"
        return Path(self.input), Path(self.output) if self.output else default


def choose_engine(requested: str) -> str:
    """'auto' -> pyxspec when HEASoft's PyXspec imports, else sherpa."""
    have_pyxspec = importlib.util.find_spec("xspec") is not None
    if requested == "pyxspec" and not have_pyxspec:
        raise DependencyError("--engine pyxspec but PyXspec is not importable (initialise HEASoft)")
    if requested == "auto":
        return "pyxspec" if have_pyxspec else "sherpa"
    return requested


class FitStep(Step):
    name = "fit"
    Options = FitOptions
    needs_obsid = False
    has_backend = False
    script = "python xspec_analysis.py"

    def options_from_run(self, options, paths, settings):
        """In a run of one observation: the observation's spectra, into its fit/ folder."""
        from dataclasses import replace
        return replace(options, input=str(paths.spectra), output=str(paths.fit))

    def check_early(self, opts: FitOptions) -> list[str]:
        """The model is settled before any step of a run (exit 3 at once when it cannot be
        evaluated); returns what to tell the user (the fallback without AtomDB)."""
        from xmmext.fitting.model_choice import settle_model
        opts.validate()
        settled = settle_model(opts.model, opts.redshift)
        return [settled.fallback_line()] if settled.fallback else []

    def plan(self, context, opts: FitOptions, backend: str = "auto") -> Plan:
        """Every check of the spectra, their files and the model happens here, before the
        old record is touched: a bad input leaves the previous fit as it was."""
        from dataclasses import replace
        from xmmext.fitting.inputs import check_spectrum, choose_background, find_spectra, soft_proton_measures
        from xmmext.fitting.model_choice import settle_model
        opts.validate()
        settled = settle_model(opts.model, opts.redshift)
        engine = choose_engine(opts.engine)
        inp, out = opts.folders()
        spectra = find_spectra(inp, opts.cameras)
        if opts.background == "model" and engine == "pyxspec":
            raise UsageError("--background model is built for the sherpa engine only: add --engine sherpa")
        measures = soft_proton_measures(spectra)
        background, why = choose_background(opts, spectra, engine, measures)
        effective = replace(opts, background=background)
        inputs = []
        for cam, path in spectra:
            files = check_spectrum(cam, path, opts)
            inputs += [path] + [Path(f) for f in files.values() if f is not None]
            if background == "model":
                from xmmext.fitting.background_parts import sidecar_inputs
                inputs += sidecar_inputs(cam, path)
        choice = {"requested": opts.background, "used": background, "reason": why}
        return finish_plan(Plan(self, opts, engine, inputs, out / "fit.json", [out],
                                (spectra, settled, effective, choice, measures),
                                decided={"model": settled.text, "background": background}))

    def run(self, plan: Plan) -> StepResult:
        from xmmext.core.fileio import write_text
        from xmmext.fitting.pyxspec_engine import pyxspec_script, run_pyxspec
        from xmmext.fitting.flags import fit_flags
        from xmmext.fitting.writers import csv_text, xcm_text
        spectra, settled, opts, choice, measures = plan.context
        expr = settled.expr
        out = plan.record.parent
        if plan.backend == "pyxspec":
            result = run_pyxspec(spectra, expr, opts)
        elif opts.background == "model":
            from xmmext.fitting.modelled_background import fit_background_model
            result = fit_background_model(spectra, expr, opts)
        else:
            from xmmext.fitting.sherpa_engine import fit_sherpa
            result = fit_sherpa(spectra, expr, opts)
        result["model_fallback"] = settled.fallback
        result["notes"] = settled.notes + result.get("notes", [])
        result["background_choice"] = choice
        result["soft_protons"] = measures
        result["flags"] = fit_flags(result, tuple(result.get("undetected", ())))
        written = [write_text(out / "fit.csv", csv_text(result))]
        if "source_region_background" in result:
            from xmmext.fitting.background_parts import SOURCE_BACKGROUND_FILE, write_source_background
            written.append(write_source_background(out / SOURCE_BACKGROUND_FILE,
                                                   result.pop("source_region_background")))
        if opts.background == "local":
            written += [write_text(out / "fit.xcm", xcm_text(result, expr, opts, out)),
                        write_text(out / "fit_pyxspec.py",
                                   "\n".join(pyxspec_script(spectra, expr, opts, script_dir=out)) + "\n")]
        else:       # an XSPEC script of the modelled background is not written yet
            result["notes"].append("fit.xcm / fit_pyxspec.py are not written for --background model (not built yet)")
        folded = result.pop("folded_spectra", None)
        if folded:
            from xmmext.fitting.plots import plot_fit
            plot_fit(out / "fit.png", folded)
            written.append(out / "fit.png")
        return StepResult(result, written)

    def describe(self, res: dict) -> str:
        pars = res["parameters"]
        kt = next((k for k in pars if k.endswith(".kT") and not pars[k]["frozen"]), None)
        st = res["statistic"]
        txt = f"stat {st['value']:.1f}/{st['dof']}"
        if kt:
            p = pars[kt]
            lo = "?" if p["lower"] is None else f"{p['lower']:.2f}"
            hi = "?" if p["upper"] is None else f"{p['upper']:.2f}"
            txt += f", {kt} = {p['value']:.2f} ({lo}-{hi}, {res['conf_level']}%)"
        flags = res.get("flags", [])
        if flags:
            txt += f"; {len(flags)} FLAG{'S' if len(flags) > 1 else ''}: " + ", ".join(f.split(":")[0] for f in flags)
        return txt

    def console(self, res: dict) -> str:
        st = res["statistic"]
        lines = [f"{st['name']} = {st['value']:.1f} for {st['dof']} dof"]
        fb = res.get("model_fallback")
        if fb:
            lines.append(f"  note: {fb['used']} instead of {fb['requested']} (AtomDB absent; kT in the rest frame)")
        for name, r in res["parameters"].items():
            if not r["frozen"]:
                lo = "?" if r["lower"] is None else f"{r['lower']:.4g}"
                hi = "?" if r["upper"] is None else f"{r['upper']:.4g}"
                lines.append(f"  {name:<22} {r['value']:.4g}  ({res['conf_level']}%: {lo} .. {hi})")
        g = res.get("goodness")
        if g and g.get("n_simulations"):
            lines.append(f"  goodness: {g['percent_below_observed']:.0f}% of {g['n_simulations']} refitted "
                         f"simulations have a lower statistic (p = {g['p_value']:.2f})")
        e = res.get("goodness_expected")
        if e:
            lines.append(f"  expected statistic {e['expected']:.1f} +- {e['sigma']:.1f}: p = {e['p_value']:.2g}")
        lines += [f"  FLAG {f}" for f in res.get("flags", [])] or ["  flags: none"]
        return "\n".join(lines)


def main(argv=None) -> int:
    from xmmext.steps.cli import step_main
    return step_main(FitStep(), argv, "xspec_analysis.py",
                     "Step 4: tbabs*(apec+powerlaw) fits with PyXspec or sherpa "
                     "(xspec_analysis.py --profile: the temperature profile; --profile --help).")

