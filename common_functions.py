"""What the top-level scripts share, and helpers for your own scripts and notebooks.

    from common_functions import obs_paths, load_events, step_json, plot_light_curve
    ev = load_events("0999990101", "pn")            # cleaned events of step 1
    print(step_json("0999990101", "filtering")["pn"]["exposure_after_s"])

For your own scripts: ``step_parser`` (the options every step shares) and ``run_step``
(one-line errors and the exit codes of DESIGN.md), as the top-level entry points use.
This file uses the package; the package never imports it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from xmmext.core.cli import base_parser, run_main
from xmmext.core.errors import UsageError
from xmmext.events.reader import EventList, read_events
from xmmext.core.paths import ObsPaths

STEP_JSON = {"filtering": ("events", "filtering.json"), "regions": ("regions", "regions.json"),
             "spectra": ("spectra", "spectra.json"), "fit": ("fit", "fit.json")}


def step_parser(prog: str, description: str, with_obsid: bool = True):
    """Parser for a script of your own, with the options the pipeline's steps share:
    --obsid, --cameras, --backend, --force, --workdir, --debug, --quiet."""
    from xmmext.steps.cli import add_runner_options
    from xmmext.core.values import cameras
    p = base_parser(prog, description)
    if with_obsid:
        p.add_argument("--obsid", required=True, help="10-digit observation ID")
    p.add_argument("--cameras", default=("mos1", "mos2", "pn"), type=cameras, help="subset of mos1,mos2,pn")
    add_runner_options(p)
    return p


def run_step(main) -> None:
    """Run a step's ``main(argv)`` and exit with its code (errors as one line)."""
    sys.exit(run_main(main))


def obs_paths(obsid: str, workdir=None) -> ObsPaths:
    """All paths of one observation (validates the OBSID)."""
    return ObsPaths.of(obsid, workdir)


def load_events(obsid: str, cam: str, workdir=None, cleaned: bool = True,
                columns: list[str] | None = None) -> EventList:
    """Events of one camera: the cleaned list of step 1, or the input list."""
    paths = obs_paths(obsid, workdir)
    if cleaned:
        return read_events(paths.clean_events(cam), columns=columns)
    from xmmext.events.reader import choose_exposure, find_event_files
    files = find_event_files(paths).get(cam)
    if not files:
        raise UsageError(f"no {cam} event list", paths.event_dir)
    return read_events(choose_exposure(files)[0], columns=columns)


def step_json(obsid: str, step: str, workdir=None) -> dict:
    """The machine-readable summary a step wrote (filtering, regions, spectra, fit)."""
    if step not in STEP_JSON:
        raise UsageError(f"unknown step {step!r}; one of {', '.join(STEP_JSON)}")
    sub, name = STEP_JSON[step]
    path = getattr(obs_paths(obsid, workdir), sub) / name
    if not path.exists():
        raise UsageError(f"step {step} has not been run for {obsid}", path)
    return json.loads(path.read_text())


def plot_light_curve(lc_file: str | Path, ax=None):
    """Plot a step-1 light curve file (<cam>_lc.fits) with its cut; returns the Axes."""
    import matplotlib.pyplot as plt
    from astropy.io import fits
    with fits.open(lc_file) as h:
        d, hdr = h["RATE"].data, h["RATE"].header
        ax = ax or plt.gca()
        t = (d["TIME"] - d["TIME"][0]) / 1000.0
        ax.step(t, d["RATE"], where="mid", color="k", lw=0.8)
        ax.axhline(hdr["FLTTHR"], color="C3", ls="--", label=f"{hdr['FLTMETH']} cut")
        ax.set_xlabel("time (ks)")
        ax.set_ylabel("rate (ct/s)")
        ax.legend()
    return ax
