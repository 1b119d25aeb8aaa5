"""The command line of a single step: parser generated from the step's Options, one
plan, one execute, one line of outcome (``run_main`` maps errors to exit codes)."""
from __future__ import annotations

import argparse
import contextlib
from dataclasses import fields
from pathlib import Path

from xmmext.core.cli import base_parser, setup_logging
from xmmext.core.errors import UsageError
from xmmext.core.fileio import observation_lock
from xmmext.core.paths import ObsPaths
from xmmext.core.runner import progress_while
from xmmext.steps.base import Step, add_options, execute, options_from_namespace

__all__ = ["add_runner_options", "add_obsid", "obsid_of", "step_main"]


def add_runner_options(p: argparse.ArgumentParser, backend: bool = True) -> None:
    """Options of the runner rather than of a step: backend and --force."""
    if backend:
        p.add_argument("--backend", default="auto", choices=["auto", "native", "sas"],
                       help="native (pure Python), sas (SAS tasks) or auto (SAS when initialised "
                            "and the ODF is present)")
    p.add_argument("--force", action="store_true", help="redo even if the step is up to date")


def add_obsid(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The OBSID as every command takes it: first positional argument (``--obsid`` is
    kept as another spelling)."""
    more = "" if required else " (optional)"
    p.add_argument("obsid", nargs="?", help=f"10-digit observation ID{more}")
    p.add_argument("--obsid", dest="obsid_option", metavar="OBSID", help=argparse.SUPPRESS)


def obsid_of(args, required: bool = True) -> str | None:
    """The OBSID given positionally or with --obsid (exit 2 when missing or given twice, differently)."""
    given = {o for o in (args.obsid, getattr(args, "obsid_option", None)) if o}
    if len(given) > 1:
        raise UsageError(f"two different OBSIDs given: {', '.join(sorted(given))}")
    if required and not given:
        raise UsageError("give the 10-digit OBSID")
    return given.pop() if given else None


def step_main(step: Step, argv, prog: str, description: str) -> int:
    """Parse ``argv`` for ``step``, run it (unless up to date) and print its outcome.
    A step that works on files anywhere (the fit) takes an OBSID too: then it works on
    that observation's products, as in a full run."""
    p = base_parser(prog, description)
    add_obsid(p, required=step.needs_obsid)
    add_options(p, step.Options)
    add_runner_options(p, backend=step.has_backend)
    args = p.parse_args(argv)
    obsid = obsid_of(args, required=step.needs_obsid)
    paths = ObsPaths.of(obsid, args.workdir) if obsid else None
    context = paths if step.needs_obsid else None
    logfile = paths.logs / f"{step.name}.log" if paths is not None and paths.data.exists() else None
    setup_logging(args.debug, args.quiet, logfile)
    opts = options_from_namespace(step.Options, args, **_from_obsid(step, paths, args))
    plan = step.plan(context, opts, getattr(args, "backend", "auto"))     # bad input fails here, touching nothing
    lock = observation_lock(context.results) if context is not None else contextlib.nullcontext()
    with lock, progress_while(step.name):
        rec = execute(plan, force=args.force)
    state = "skipped (up to date)" if rec.skipped else "done"
    print(f"{step.name} ({plan.backend}) {state}: {step.console(rec.summary)}")
    if not rec.skipped:
        _refresh_report(step, plan)
    return 0


def _refresh_report(step: Step, plan) -> None:
    """A step run on its own changed an observation's results: its report.html, when there
    is one, is rebuilt (the report step is redone when any record it shows changed), and
    the user is told."""
    from xmmext.core.fileio import read_record
    from xmmext.steps.report import ReportOptions, ReportStep
    results = Path(plan.record).resolve().parent.parent
    previous = read_record(results / "report.json")
    if step.name == "report" or not previous or not (results / "report.html").exists():
        return
    try:
        paths = ObsPaths.of(results.name, results.parent.parent)
    except UsageError:
        return                                   # not a results/<OBSID>/ folder
    with observation_lock(paths.results):
        rec = execute(ReportStep().plan(paths, ReportOptions(name=previous.get("name", "source"))))
    if not rec.skipped:
        print(f"report.html rebuilt with the new {step.name} results: {paths.results / 'report.html'}")


def _from_obsid(step: Step, paths: ObsPaths | None, args) -> dict:
    """For a step that works on files anywhere, given an OBSID: the options a full run
    would give it (the fit: that observation's spectra, into its fit/ folder)."""
    if paths is None or step.needs_obsid:
        return {}
    default = step.Options()
    run = step.options_from_run(default, paths, None)
    given = {f.name: getattr(run, f.name) for f in fields(run) if getattr(run, f.name) != getattr(default, f.name)}
    for name in given:
        if hasattr(args, name):
            raise UsageError(f"give the OBSID or --{name.replace('_', '-')}, not both")
    return given
