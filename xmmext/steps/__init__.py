"""The analysis steps, each with the same shape (:mod:`xmmext.steps.base`: Options ->
plan -> run -> record, one up-to-date rule). The list of steps, in order, is
:mod:`xmmext.steps.registry`; each step's module says its inputs and outputs.

For notebooks: build an Options object, then ``run_filtering(paths, FilterOptions())``
etc. (each returns the step's record content), or :func:`run_observation` for all.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from xmmext.core.paths import ObsPaths
from xmmext.steps.base import Plan, Step, StepRecord, StepResult, execute, is_up_to_date
from xmmext.steps.filtering import FilteringStep, FilterOptions
from xmmext.steps.fit import FitOptions, FitStep
from xmmext.steps.profile import ProfileOptions, ProfileStep
from xmmext.steps.regions import RegionOptions, RegionsStep
from xmmext.steps.report import ReportOptions, ReportStep
from xmmext.steps.registry import OBSERVATION_STEPS as STEPS
from xmmext.steps.run import RunSettings, run_observation
from xmmext.steps.spectra import SpectraOptions, SpectraStep

__all__ = ["Step", "Plan", "StepResult", "StepRecord", "execute", "is_up_to_date", "STEPS", "RunSettings",
           "run_observation", "FilteringStep", "FilterOptions", "RegionsStep", "RegionOptions", "SpectraStep",
           "SpectraOptions", "FitStep", "FitOptions", "ProfileStep", "ProfileOptions", "ReportStep", "ReportOptions",
           "run_filtering", "run_regions", "run_spectra", "run_fit", "run_profile"]


def run_filtering(paths: ObsPaths, opts: FilterOptions | None = None, force: bool = False,
                  backend: str = "native") -> dict:
    """Step 1 for one observation (unless up to date); returns filtering.json's content."""
    return execute(FilteringStep().plan(paths, opts or FilterOptions(), backend), force).summary


def run_regions(paths: ObsPaths, opts: RegionOptions | None = None, force: bool = False,
                backend: str = "native") -> dict:
    """Step 2 for one observation (unless up to date); returns regions.json's content."""
    return execute(RegionsStep().plan(paths, opts or RegionOptions(), backend), force).summary


def run_spectra(paths: ObsPaths, opts: SpectraOptions | None = None, force: bool = False,
                backend: str = "native") -> dict:
    """Step 3 for one observation (unless up to date); returns spectra.json's content."""
    return execute(SpectraStep().plan(paths, opts or SpectraOptions(), backend), force).summary


def run_fit(input_dir: str | Path, output_dir: str | Path | None = None, opts: FitOptions | None = None,
            force: bool = False) -> dict:
    """Step 4 on the spectra in ``input_dir`` (unless up to date); returns fit.json's content."""
    opts = replace(opts or FitOptions(), input=str(input_dir), output=None if output_dir is None else str(output_dir))
    return execute(FitStep().plan(None, opts), force).summary


def run_profile(paths: ObsPaths, opts: ProfileOptions | None = None, force: bool = False) -> dict:
    """The temperature profile of one observation (unless up to date; steps 1-2 done
    before); returns profile.json's content."""
    return execute(ProfileStep().plan(paths, opts or ProfileOptions()), force).summary
