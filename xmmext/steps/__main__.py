"""``python -m xmmext.steps <step> [options]``: one step on its own (what run_filtering.sh,
generate_regions.sh, spectral_analysis.py and xspec_analysis.py call)."""
import sys

from xmmext.core.cli import run_main
import xmmext.steps.filtering as filtering; import xmmext.steps.fit as fit; import xmmext.steps.profile as profile; import xmmext.steps.regions as regions; import xmmext.steps.spectra as spectra

MAINS = {"filtering": filtering.main, "regions": regions.main, "spectra": spectra.main, "fit": fit.main,
         "profile": profile.main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in MAINS:
        sys.stderr.write(f"error: give a step: {', '.join(MAINS)} (see <step> --help)\n")
        sys.exit(2)
    sys.exit(run_main(MAINS[sys.argv[1]], sys.argv[2:]))
