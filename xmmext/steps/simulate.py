"""The demo's first step: the simulated observation (``--demo``; ``python -m
xmmext.simulate.observation`` on its own). Options: :class:`~xmmext.simulate.config.SimConfig`
(every field is part of the fingerprint). Output: data/<OBSID>/event/*.fits and the
per-event component labels; record truth.json (the truth, with the step's record). Up to
date when the same configuration and the same thermal model (AtomDB or not) made it.
"""
from __future__ import annotations

from xmmext.core.paths import ObsPaths
from xmmext.simulate.config import SimConfig, validate
from xmmext.steps.base import Plan, Step, StepResult, finish_plan

__all__ = ["SimulateStep"]


class SimulateStep(Step):
    name = "simulate"
    Options = SimConfig
    has_backend = False
    script = "python -m xmmext.simulate.observation --obsid {obsid}"

    def plan(self, paths: ObsPaths, cfg: SimConfig, backend: str = "auto") -> Plan:
        from xmmext.simulate.source_spectra import thermal_model
        validate(cfg)
        return finish_plan(Plan(self, cfg, "native", [], paths.truth, [paths.data], paths,
                                decided={"thermal_model": thermal_model(cfg)}))

    def run(self, plan: Plan) -> StepResult:
        from pathlib import Path
        from xmmext.simulate.observation import simulate
        paths = plan.context
        truth = simulate(plan.options, paths.workdir)
        labels = [paths.data / f"truth_{c}_components.npy" for c in truth["files"]]
        return StepResult(truth, [Path(f) for f in truth["files"].values()] + labels)

    def describe(self, summary: dict) -> str:
        counts = summary.get("counts", {})
        return "simulated " + ", ".join(f"{c} {sum(v.values())} events" for c, v in counts.items())
