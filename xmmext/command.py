"""``xmmext <command> [options]``: every entry point of the pipeline under one command.

    xmmext run <OBSID> <name> [options]     all steps (--demo, --list obs_list.txt <name>)
    xmmext filter <OBSID>                   step 1   (run_filtering.sh)
    xmmext regions <OBSID>                  step 2   (generate_regions.sh)
    xmmext spectra <OBSID>                  step 3   (spectral_analysis.py)
    xmmext fit <OBSID> | --input DIR        step 4   (xspec_analysis.py)
    xmmext profile <OBSID>                  temperature profile (xspec_analysis.py --profile)
    xmmext many --list obs_list.txt         many observations: run the missing, combine
    xmmext simulate [--obsid ...]           a simulated observation (the demo's)
    xmmext env                              which backends and engines this machine has

The top-level scripts are thin wrappers of the same commands with the same options.
"""
from __future__ import annotations

import importlib
import sys

from xmmext.core.cli import run_main

__all__ = ["COMMANDS", "main"]

# command -> (module whose main(argv) runs it, what it does)
COMMANDS = {
    "run": ("xmmext.pipeline.run", "all steps for one observation, a list, or the demo"),
    "filter": ("xmmext.steps.filtering", "step 1: flare-cleaned event lists, GTIs, light curves"),
    "regions": ("xmmext.steps.regions", "step 2: images, point sources, source and background regions"),
    "spectra": ("xmmext.steps.spectra", "step 3: spectra, responses, grouping"),
    "fit": ("xmmext.steps.fit", "step 4: joint fit of the cameras' spectra"),
    "profile": ("xmmext.steps.profile", "temperature profile in annuli"),
    "many": ("xmmext.pipeline.many", "many observations: run the missing ones, combine their fits"),
    "simulate": ("xmmext.simulate.observation", "a simulated XMM observation of a cluster"),
    "env": ("xmmext.pipeline.environment", "the backends and fitting engines found on this machine"),
}


def usage() -> str:
    """The list of commands, as --help prints it."""
    from xmmext.core.version import __version__
    lines = [f"xmmext {__version__}: XMM-Newton EPIC extended-source analysis",
             "", "usage: xmmext <command> [options]   (xmmext <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Dispatch to the command's own main (exit codes as every entry point's)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from xmmext.core.version import __version__
        print(f"xmmext {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        sys.stderr.write(f"error: unknown command {argv[0]!r}; one of: {', '.join(COMMANDS)}\n")
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return run_main(module.main, argv[1:])


def console() -> None:
    """The ``xmmext`` console script."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:          # `xmmext --help | head`: the reader left; nothing to say
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
