"""Step 5 of one observation: report.html, one self-contained page with every step's
numbers, plots, warnings and the commands that reproduce them.

Options: :class:`ReportOptions`. Inputs: the records and plots of steps 1-4. Output:
results/<OBSID>/report.html; record report.json. The work: :mod:`xmmext.report`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from xmmext.core.paths import ObsPaths, validate_name
from xmmext.steps.base import Plan, Step, StepResult, finish_plan, option

PRODUCTS = ("events/filtering.json", "regions/regions.json", "spectra/spectra.json", "fit/fit.json",
            "regions/regions.png", "regions/profile.png", "spectra/spectra.png", "fit/fit.png",
            "profile/profile.json", "profile/profile.png")


@dataclass
class ReportOptions:
    """Report settings."""
    name: str = option("source", "source/run name shown in the report", pipeline=False)
    commands: list = field(default_factory=list, metadata={"fingerprint": False})   # shell lines to reproduce

    def validate(self) -> None:
        validate_name(self.name)


class ReportStep(Step):
    name = "report"
    Options = ReportOptions
    has_backend = False

    def plan(self, paths: ObsPaths, opts: ReportOptions, backend: str = "auto") -> Plan:
        opts.validate()
        inputs = [paths.results / p for p in PRODUCTS] + sorted(paths.events.glob("*_lc.png"))
        return finish_plan(Plan(self, opts, "native", inputs, paths.results / "report.json", [paths.results],
                                paths))

    def run(self, plan: Plan) -> StepResult:
        from xmmext.report import build_report
        dest = build_report(plan.context, plan.options.name, plan.options.commands)
        return StepResult({"name": plan.options.name, "report": dest.name}, [dest])

    def describe(self, summary: dict) -> str:
        return summary.get("report", "report.html")
