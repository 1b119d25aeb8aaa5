"""A run of the steps for one observation, whatever the steps are: the options the full
pipeline forwards to each step, :func:`check_run` before anything starts, and
:func:`run_observation` (used by ``run_extended_source_analysis.sh`` and by the
multi-observation runner). The steps and their order: :mod:`xmmext.steps.registry`; what
a step needs from a run it declares itself (:class:`~xmmext.steps.base.Step`)."""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field

from xmmext.core.cli import log_to_file, say_warnings_again
from xmmext.core.errors import XmmextError
from xmmext.core.fileio import observation_lock
from xmmext.core.runner import progress_while
from xmmext.core.paths import ObsPaths
from xmmext.steps.base import StepRecord, add_options, execute, option_fields, options_from_namespace
from xmmext.steps.registry import OBSERVATION_STEPS as STEPS

log = logging.getLogger("xmmext.steps.run")

__all__ = ["RunSettings", "default_options", "add_pipeline_options", "step_options_from", "check_run",
           "run_observation"]

@dataclass
class RunSettings:
    """Everything one observation's run needs besides its OBSID (picklable, so it travels
    to process-pool and dask workers unchanged)."""
    options: dict = field(default_factory=dict)      # {step name: its Options}
    backend: str = "auto"
    force: bool = False
    workdir: str | None = None
    name: str = "source"
    extra: tuple = ()                                 # optional steps asked for (e.g. ("profile",))
    checked: bool = False                             # check_run already done (the pipeline does it first)
    stop_after: str | None = None                     # the last step to run (None: all)

    def runs(self, step) -> bool:
        """Whether ``step`` is part of this run (optional steps only when asked, none after
        ``stop_after``)."""
        if self.stop_after is not None:
            names = [s.name for s in STEPS]
            if names.index(step.name) > names.index(self.stop_after):
                return False
        return not step.optional or step.name in self.extra


def default_options(**given) -> dict:
    """{step name: Options}: each step's defaults, or the Options given by step name
    (e.g. ``default_options(fit=FitOptions(model="tbabs*bremss", nh=0.03))``)."""
    return {step.name: given.get(step.name) or step.Options() for step in STEPS}


def add_pipeline_options(p: argparse.ArgumentParser) -> None:
    """Every step's options that the pipeline forwards, one group per step; an option
    several steps share (e.g. --cameras) is given once and goes to all of them."""
    seen: set[str] = set()
    for step in STEPS:
        group = p.add_argument_group(f"{step.name} options")
        seen |= set(add_options(group, step.Options, pipeline_only=True, skip=seen))


def step_options_from(ns: argparse.Namespace, **fit_overrides) -> dict:
    """{step name: Options} from the pipeline's parsed command line; ``fit_overrides``
    (e.g. the demo's nH) go to every step that has that option."""
    out = {}
    for step in STEPS:
        names = {f.name for f in option_fields(step.Options)}
        extra = {k: v for k, v in fit_overrides.items() if k in names}
        out[step.name] = options_from_namespace(step.Options, ns, pipeline_only=True, **extra)
    return out


def check_run(settings: RunSettings, prefix: str = "", echo: bool = True) -> list[str]:
    """What every step of the run can check before any of them starts (the fit's model:
    exit 3 at once when it cannot be evaluated); prints and returns what to tell the user."""
    said = []
    for step in STEPS:
        if settings.runs(step):
            said += step.check_early(settings.options.get(step.name) or step.Options())
    if echo:
        for line in said:
            print(f"{prefix}note       {line}", flush=True)
    return said


def run_observation(obsid: str, settings: RunSettings, echo: bool = True) -> dict[str, StepRecord]:
    """Run every step for one observation; return {step: its StepRecord} (``.summary`` is
    the content of the step's record file, ``.skipped`` whether it was up to date,
    ``.outcome()`` the line the pipeline prints).

    On failure the exception is re-raised with the outcome lines so far attached (``.steps``)."""
    paths = ObsPaths.of(obsid, settings.workdir)
    say_warnings_again()
    if not settings.checked:
        check_run(settings, f"[{obsid}] ", echo)
    with observation_lock(paths.results):
        return _run_steps(paths, settings, echo)


def _run_steps(paths: ObsPaths, settings: RunSettings, echo: bool) -> dict[str, StepRecord]:
    obsid = paths.obsid
    records: dict[str, StepRecord] = {}
    for step in STEPS:
        if not settings.runs(step):
            continue
        t0 = time.monotonic()
        try:
            opts = step.options_from_run(settings.options.get(step.name) or step.Options(), paths, settings)
            with log_to_file(paths.logs / f"{step.name}.log"), progress_while(f"[{obsid}] {step.name}",
                                                                          disable=None if echo else True):
                plan = step.plan(paths if step.needs_obsid else None, opts, settings.backend)
                log.debug("%s (%s) for %s, options %s", step.name, plan.backend, paths.obsid, plan.described["options"])
                rec = records[step.name] = execute(plan, force=settings.force)
                log.debug("%s %s", step.name, rec.outcome())
        except XmmextError as exc:
            exc.steps = {**{k: r.outcome() for k, r in records.items()}, step.name: f"failed: {exc.one_line()}"}
            if echo:
                print(f"[{obsid}] {step.name:<10} {exc.steps[step.name]}", flush=True)
            raise
        if echo:
            print(f"[{obsid}] {step.name:<10} {rec.outcome()} ({time.monotonic() - t0:.1f} s)", flush=True)
    return records
