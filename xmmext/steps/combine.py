"""The steps of a list of observations, after each has run: ``combine`` (every fit.json in
one table, weighted means, plots: results/multi/<name>/, record summary.json) and ``joint``
(one fit of all observations' spectra: results/multi/<name>/joint/, record fit.json).

Options: :class:`CombineOptions`, :class:`JointFitOptions`. Their inputs are the
observations' fit.json files (combine) or spectra and every file their headers name
(joint), fingerprinted as every step's: a re-run with the same fits is up to date, a
changed or new fit redoes it. The work: :mod:`xmmext.fitting.combined`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xmmext.core.paths import ObsPaths, multi_dir, validate_name
from xmmext.steps.base import Plan, Step, StepResult, finish_plan

__all__ = ["CombineOptions", "JointFitOptions", "CombineStep", "JointFitStep"]


@dataclass
class CombineOptions:
    """Which observations and the name of the combined result."""
    name: str = "combined"
    obsids: tuple = ()
    workdir: str | None = field(default=None, metadata={"fingerprint": False})

    def validate(self) -> None:
        validate_name(self.name)


@dataclass
class JointFitOptions(CombineOptions):
    """The observations and the fit's options (a FitOptions)."""
    fit: object = None


class CombineStep(Step):
    name = "combine"
    Options = CombineOptions
    needs_obsid = False
    has_backend = False

    def plan(self, context, opts: CombineOptions, backend: str = "auto") -> Plan:
        opts.validate()
        out = multi_dir(opts.name, opts.workdir)
        inputs = [ObsPaths.of(o, opts.workdir).fit / "fit.json" for o in opts.obsids]
        return finish_plan(Plan(self, opts, "native", inputs, out / "summary.json", [out], opts))

    def run(self, plan: Plan) -> StepResult:
        from xmmext.fitting.combined import combine_fits
        opts = plan.options
        summary, written = combine_fits(list(opts.obsids), opts.name, opts.workdir)
        return StepResult(summary, written)

    def describe(self, summary: dict) -> str:
        return f"{summary.get('n', 0)} observations combined"


class JointFitStep(Step):
    name = "joint"
    Options = JointFitOptions
    needs_obsid = False
    has_backend = False

    def plan(self, context, opts: JointFitOptions, backend: str = "auto") -> Plan:
        from xmmext.fitting.combined import joint_spectra
        opts.validate()
        opts.fit.validate()
        out = multi_dir(opts.name, opts.workdir) / "joint"
        inputs: list[Path] = []
        for _, path, named in joint_spectra(list(opts.obsids), opts.workdir, opts.fit):
            inputs += [Path(path)] + [Path(f) for f in named.values() if f]
        return finish_plan(Plan(self, opts, "native", inputs, out / "fit.json", [out], opts))

    def run(self, plan: Plan) -> StepResult:
        from xmmext.fitting.combined import joint_fit
        opts = plan.options
        result, written = joint_fit(list(opts.obsids), opts.name, opts.workdir, opts.fit)
        return StepResult(result, written)

    def describe(self, summary: dict) -> str:
        st = summary.get("statistic", {})
        return f"joint fit of {len(summary.get('joint_observations', []))} observations: " \
               f"{st.get('name')} {st.get('value', 0):.1f}/{st.get('dof')}"
