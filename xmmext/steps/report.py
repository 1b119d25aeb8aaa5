"""Step 5 of one observation: report.html, one self-contained page with every step's
numbers, plots, warnings and the commands that reproduce them.

Options: :class:`ReportOptions`. Inputs: the records and plots of steps 1-4. Output:
results/<OBSID>/report.html; record report.json. The work: :mod:`xmmext.report`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from xmmext.core.paths import ObsPaths, validate_name
from xmmext.steps.base import Plan, Step, StepResult, finish_plan, option

__all__ = ["PRODUCTS", "ReportOptions", "ReportStep", "reproduce_commands"]

PRODUCTS = ("events/filtering.json", "regions/regions.json", "spectra/spectra.json", "fit/fit.json",
            "regions/regions.png", "regions/profile.png", "spectra/spectra.png", "fit/fit.png",
            "profile/profile.json", "profile/profile.png")


@dataclass
class ReportOptions:
    """Report settings."""
    name: str = option("source", "source/run name shown in the report", pipeline=False)

    def validate(self) -> None:
        validate_name(self.name)


class ReportStep(Step):
    name = "report"
    Options = ReportOptions
    has_backend = False

    def options_from_run(self, options, paths, settings):
        """In a run: the run's name."""
        from dataclasses import replace
        return replace(options, name=settings.name)

    def plan(self, paths: ObsPaths, opts: ReportOptions, backend: str = "auto") -> Plan:
        opts.validate()
        inputs = [paths.results / p for p in PRODUCTS] + sorted(paths.events.glob("*_lc.png"))
        return finish_plan(Plan(self, opts, "native", inputs, paths.results / "report.json", [paths.results],
                                paths))

    def run(self, plan: Plan) -> StepResult:
        from xmmext.report import build_report
        dest = build_report(plan.context, plan.options.name, reproduce_commands(plan.context))
        return StepResult({"name": plan.options.name, "report": dest.name}, [dest])

    def describe(self, summary: dict) -> str:
        return summary.get("report", "report.html")


def reproduce_commands(paths: ObsPaths) -> list[str]:
    """The commands that redo each step of the observation on its own, as the steps'
    records state them, in the order the records were written (the order of the run)."""
    found = []
    for path in paths.results.glob("*/*.json"):
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        rec = _record_of(data)
        if rec and rec.get("complete") and rec.get("command"):
            found.append((path.stat().st_mtime_ns, rec["command"]))
    return [c for _, c in sorted(found)]


def _record_of(data) -> dict | None:
    """The step record a JSON file holds (``step``, or per camera as step 1 keeps it)."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("step"), dict):
        return data["step"]
    return next((v["step"] for v in data.values() if isinstance(v, dict) and isinstance(v.get("step"), dict)), None)
