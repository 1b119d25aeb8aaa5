"""The steps in order, for one observation: the options the full pipeline forwards to
each step, and :func:`run_observation` (used by ``run_extended_source_analysis.sh`` and by
the multi-observation runner)."""
from __future__ import annotations

import argparse
import shlex
import time
from dataclasses import dataclass, field, replace

from xmmext.core.errors import XmmextError
from xmmext.core.fileio import observation_lock
from xmmext.core.paths import ObsPaths
from xmmext.steps.base import add_options, default_of, execute, flag_of, option_fields, options_from_namespace
from xmmext.steps.filtering import FilteringStep
from xmmext.steps.fit import FitStep
from xmmext.steps.profile import ProfileStep
from xmmext.steps.regions import RegionsStep
from xmmext.steps.report import ReportStep
from xmmext.steps.spectra import SpectraStep

STEPS = (FilteringStep(), RegionsStep(), SpectraStep(), FitStep(), ProfileStep(), ReportStep())
OPTIONAL = {"profile"}            # steps run only when asked (RunSettings.profile)
SCRIPTS = {"filtering": "bash run_filtering.sh {obsid}", "regions": "bash generate_regions.sh {obsid}",
           "spectra": "python spectral_analysis.py --obsid {obsid}", "fit": "python xspec_analysis.py",
           "profile": "python xspec_analysis.py --profile --obsid {obsid}"}


@dataclass
class RunSettings:
    """Everything one observation's run needs besides its OBSID (picklable, so it travels
    to process-pool and dask workers unchanged)."""
    options: dict = field(default_factory=dict)      # {step name: its Options}
    backend: str = "auto"
    force: bool = False
    workdir: str | None = None
    name: str = "source"
    profile: bool = False                             # also the temperature profile
    checked: bool = False                             # check_run already done (the pipeline does it first)
    stop_after: str | None = None                     # the last step to run (None: all)

    def runs(self, step) -> bool:
        """Whether ``step`` is part of this run (optional steps only when asked, none after
        ``stop_after``)."""
        if self.stop_after is not None:
            names = [s.name for s in STEPS]
            if names.index(step.name) > names.index(self.stop_after):
                return False
        return step.name not in OPTIONAL or (step.name == "profile" and self.profile)


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
    (e.g. the demo's nH) go to the fit and to every step that has the same option."""
    out = {}
    for step in STEPS:
        names = {f.name for f in option_fields(step.Options)}
        extra = {k: v for k, v in fit_overrides.items() if step.name == "fit" or k in names}
        out[step.name] = options_from_namespace(step.Options, ns, pipeline_only=True, **extra)
    return out


def option_argv(opts) -> list[str]:
    """The command-line options that give ``opts`` (those that differ from the defaults)."""
    argv: list[str] = []
    for f in option_fields(type(opts)):
        v, m = getattr(opts, f.name), f.metadata
        if v == default_of(f) or v is None or (isinstance(v, tuple) and list(v) == list(default_of(f))):
            continue
        flag = flag_of(f)
        if m["switch"]:
            argv.append(flag)
        elif isinstance(v, dict):
            for k, x in v.items():
                argv += [flag, f"{k}={x}"]
        elif isinstance(v, list):
            for x in v:
                argv += [flag, str(x)]
        elif isinstance(v, tuple):
            argv += [flag, ",".join(v)]
        else:
            argv += [flag, str(v)]
    return argv


def reproduce_commands(paths: ObsPaths, settings: RunSettings) -> list[str]:
    """Shell lines (quoted) that redo each step on its own with the same options."""
    lines = []
    for step in STEPS:
        if step.name not in SCRIPTS or not settings.runs(step):
            continue
        head = shlex.split(SCRIPTS[step.name].format(obsid=paths.obsid))
        opts = settings.options[step.name]
        if step.name == "fit":
            head += ["--input", str(paths.spectra)]
        else:
            head += ["--workdir", str(paths.workdir)]
            if settings.backend != "auto":
                head += ["--backend", settings.backend]
        lines.append(shlex.join(head + option_argv(opts)))
    return lines


def _options_for(step, paths: ObsPaths, settings: RunSettings):
    opts = settings.options.get(step.name) or step.Options()
    if step.name == "fit":
        opts = replace(opts, input=str(paths.spectra), output=str(paths.fit))
    elif step.name == "report":
        opts = replace(opts, name=settings.name, commands=reproduce_commands(paths, settings))
    return opts


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


def run_observation(obsid: str, settings: RunSettings, echo: bool = True) -> dict[str, str]:
    """Run every step for one observation; return {step: outcome line}.

    On failure the exception is re-raised with the outcomes so far attached (``.steps``)."""
    paths = ObsPaths.of(obsid, settings.workdir)
    if not settings.checked:
        check_run(settings, f"[{obsid}] ", echo)
    with observation_lock(paths.results):
        return _run_steps(paths, settings, echo)


def _run_steps(paths: ObsPaths, settings: RunSettings, echo: bool) -> dict[str, str]:
    obsid = paths.obsid
    outcome: dict[str, str] = {}
    for step in STEPS:
        if not settings.runs(step):
            continue
        t0 = time.monotonic()
        try:
            plan = step.plan(paths if step.needs_obsid else None, _options_for(step, paths, settings),
                             settings.backend)
            rec = execute(plan, force=settings.force)
            outcome[step.name] = ("skipped (up to date)" if rec.skipped else "done") + f": {rec.message}"
        except XmmextError as exc:
            outcome[step.name] = f"failed: {exc.one_line()}"
            if echo:
                print(f"[{obsid}] {step.name:<10} {outcome[step.name]}", flush=True)
            exc.steps = outcome
            raise
        if echo:
            print(f"[{obsid}] {step.name:<10} {outcome[step.name]} ({time.monotonic() - t0:.1f} s)", flush=True)
    return outcome

