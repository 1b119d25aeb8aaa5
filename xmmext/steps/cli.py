"""The command line of a single step: parser generated from the step's Options, one
plan, one execute, one line of outcome (``run_main`` maps errors to exit codes)."""
from __future__ import annotations

import argparse
import contextlib

from xmmext.core.cli import base_parser, setup_logging
from xmmext.core.fileio import observation_lock
from xmmext.core.paths import ObsPaths
from xmmext.steps.base import Step, add_options, execute, options_from_namespace


def add_runner_options(p: argparse.ArgumentParser, backend: bool = True) -> None:
    """Options of the runner rather than of a step: backend and --force."""
    if backend:
        p.add_argument("--backend", default="auto", choices=["auto", "native", "sas"],
                       help="native (pure Python), sas (SAS tasks) or auto (SAS when initialised "
                            "and the ODF is present)")
    p.add_argument("--force", action="store_true", help="redo even if the step is up to date")


def step_main(step: Step, argv, prog: str, description: str, obsid_positional: bool = False) -> int:
    """Parse ``argv`` for ``step``, run it (unless up to date) and print its outcome."""
    p = base_parser(prog, description)
    if step.needs_obsid:
        if obsid_positional:
            p.add_argument("obsid", help="10-digit observation ID")
        else:
            p.add_argument("--obsid", required=True, help="10-digit observation ID")
    add_options(p, step.Options)
    add_runner_options(p, backend=step.has_backend)
    args = p.parse_args(argv)
    context = ObsPaths.of(args.obsid, args.workdir) if step.needs_obsid else None
    logfile = context.logs / f"{step.name}.log" if context is not None and context.data.exists() else None
    setup_logging(args.debug, args.quiet, logfile)
    opts = options_from_namespace(step.Options, args)
    plan = step.plan(context, opts, getattr(args, "backend", "auto"))     # bad input fails here, touching nothing
    lock = observation_lock(context.results) if context is not None else contextlib.nullcontext()
    with lock:
        rec = execute(plan, force=args.force)
    state = "skipped (up to date)" if rec.skipped else "done"
    print(f"{step.name} ({plan.backend}) {state}: {step.console(rec.summary)}")
    return 0
