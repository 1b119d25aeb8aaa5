"""The one list of steps. A run of one observation runs :data:`OBSERVATION_STEPS` in this
order (optional ones only when asked); the steps of a list of observations and of the
demo are here too, so that every command line and document takes them from one place."""
from __future__ import annotations

from xmmext.steps.combine import CombineStep, JointFitStep
from xmmext.steps.filtering import FilteringStep
from xmmext.steps.fit import FitStep
from xmmext.steps.profile import ProfileStep
from xmmext.steps.regions import RegionsStep
from xmmext.steps.report import ReportStep
from xmmext.steps.simulate import SimulateStep
from xmmext.steps.spectra import SpectraStep

__all__ = ["OBSERVATION_STEPS", "LIST_STEPS", "DEMO_STEPS", "ALL_STEPS", "step_named"]

OBSERVATION_STEPS = (FilteringStep(), RegionsStep(), SpectraStep(), FitStep(), ProfileStep(), ReportStep())
LIST_STEPS = (CombineStep(), JointFitStep())        # after the observations of a list
DEMO_STEPS = (SimulateStep(),)                      # before the demo's observation
ALL_STEPS = DEMO_STEPS + OBSERVATION_STEPS + LIST_STEPS


def step_named(name: str):
    """The step called ``name``."""
    return next(s for s in ALL_STEPS if s.name == name)
