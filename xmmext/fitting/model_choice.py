"""Which model a fit uses, settled before any step runs.

A model the user names is used as given, and when it cannot be evaluated here (apec and
the other thermal-plasma models without their AtomDB files, a component that crashes the
XSPEC library) the run stops at once with exit 3 saying what to install and where. With
no model named, the default (``tbabs*(apec+powerlaw)``) is used when AtomDB is there, else
the same model with ``zbremss`` in place of ``apec``: a thermal continuum at the source's
redshift, so that its kT is a rest-frame temperature as apec's would be. That fallback is
said in the terminal, fit.json (``model_fallback``), fit.xcm and the report.

A ``--redshift`` that a component ignores (``bremss``, ``bbody``: no redshift parameter)
gives a note saying its temperature is in the observed frame.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from xmmext.xspec.atomdb import find_apec_files, needs_atomdb

__all__ = ["DEFAULT_MODEL", "FALLBACK_MODEL", "DEFAULT_PROFILE_MODEL", "FALLBACK_PROFILE_MODEL", "FALLBACK_REASON",
           "SettledModel", "settle_model", "redshift_notes"]

log = logging.getLogger("xmmext.fitting")

DEFAULT_MODEL = "tbabs*(apec+powerlaw)"
FALLBACK_MODEL = "tbabs*(zbremss+powerlaw)"
DEFAULT_PROFILE_MODEL = "tbabs*apec"
FALLBACK_PROFILE_MODEL = "tbabs*zbremss"
FALLBACK_REASON = ("AtomDB files for apec are absent (apec_v3.x_coco.fits, apec_v3.x_line.fits; "
                   "python -m xmmext.xspec.atomdb --status): thermal continuum zbremss at the source's redshift "
                   "instead (rest-frame kT, no emission lines, no abundance)")


@dataclass
class SettledModel:
    """The model expression a fit uses and why."""
    text: str
    expr: object                                   # the parsed ModelExpression
    fallback: dict | None = None                   # {"requested", "used", "reason"} when not the default
    notes: list[str] = field(default_factory=list)

    def fallback_line(self) -> str | None:
        """One line for the terminal, or None."""
        if not self.fallback:
            return None
        return (f"model: {self.fallback['used']} instead of {self.fallback['requested']} "
                "(AtomDB absent; kT in the rest frame) - python -m xmmext.xspec.atomdb --status")


def settle_model(model: str | None, redshift: float | None = None, default: str = DEFAULT_MODEL,
                 fallback: str = FALLBACK_MODEL) -> SettledModel:
    """The model of a fit: ``model`` when given (exit 2 when it does not parse, exit 3 when
    it cannot be evaluated here), else ``default`` or, without AtomDB, ``fallback``."""
    from xmmext.fitting.inputs import model_for_fit
    chosen, fell_back = model, None
    if model is None:
        chosen = default
        if needs_atomdb(_component_names(default)) and find_apec_files() is None:
            chosen = fallback
            fell_back = {"requested": default, "used": fallback, "reason": FALLBACK_REASON}
    expr = model_for_fit(chosen)
    notes = redshift_notes(expr, redshift)
    if fell_back:
        notes.insert(0, f"model {fallback} instead of {default}: {FALLBACK_REASON}")
    return SettledModel(chosen, expr, fell_back, notes)


def redshift_notes(expr, redshift: float | None) -> list[str]:
    """Notes on components that do not use a given redshift, or that take one when none
    was given (it stays at their default, 0)."""
    if redshift is None:
        return [f"{c.name}.Redshift stays at 0: no --redshift given" for c in expr.components
                if any(p.name.lower() == "redshift" for p in c.definition.params)]
    if redshift == 0:
        return []
    notes = []
    takes = [c for c in expr.components if any(p.name.lower() == "redshift" for p in c.definition.params)]
    if not takes:
        notes.append(f"--redshift {redshift:g} has no effect: no component of {expr.text} takes a redshift")
    for c in expr.components:
        pnames = {p.name.lower() for p in c.definition.params}
        if "kt" in pnames and "redshift" not in pnames:
            notes.append(f"{c.name} has no redshift parameter: its kT is in the observed frame "
                         f"(rest frame = kT x (1+z) = kT x {1 + redshift:.4g}); zbremss or apec take the redshift")
    return notes


def _component_names(text: str) -> list[str]:
    from xmmext.xspec.expression import parse_model
    return [c.xspec_name for c in parse_model(text).components]
