"""xmmext: XMM-Newton EPIC extended-source analysis (native Python and SAS backends).

For notebooks, the public face is::

    from xmmext import ObsPaths, FilterOptions, run_filtering, run_observation, RunSettings

``steps`` holds the analysis steps (Options -> plan -> run -> record, one up-to-date
rule); the modules beside it do the work, one concern each (see the README, "Layout of
the code"). Names are loaded on first use, so ``import xmmext`` stays light.
"""
from xmmext.core.version import __version__

__all__ = ["ObsPaths", "RunSettings", "run_observation", "STEPS",
           "FilteringStep", "FilterOptions", "run_filtering", "RegionsStep", "RegionOptions", "run_regions",
           "SpectraStep", "SpectraOptions", "run_spectra", "FitStep", "FitOptions", "run_fit",
           "ProfileStep", "ProfileOptions", "run_profile",
           "ReportStep", "ReportOptions", "XmmextError", "__version__"]


def __getattr__(name: str):
    if name == "ObsPaths":
        from xmmext.core.paths import ObsPaths
        return ObsPaths
    if name == "XmmextError":
        from xmmext.core.errors import XmmextError
        return XmmextError
    if name in __all__:
        import xmmext.steps as steps
        return getattr(steps, name)
    raise AttributeError(f"module 'xmmext' has no attribute {name!r}")
