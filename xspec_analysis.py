#!/usr/bin/env python3
"""Step 4: joint fits of the cameras' spectra, e.g. tbabs*(apec+powerlaw).

    python xspec_analysis.py --input results/<OBSID>/spectra [--model "tbabs*(apec+powerlaw)"]
        [--nh 0.03 --nh-free] [--redshift 0.05] [--abund-table aspl|angr|wilm] [--stat cstat|wstat|chi2]
        [--background auto|local|annulus|model|none] [--emin 0.5 --emax 7.0] [--freeze ... --set par=value ...]
        [--engine auto|pyxspec|sherpa] [--cameras ...] [--output DIR] [--conf 90|68]

Outputs fit.json, fit.csv, fit.xcm, fit.png (and fit_pyxspec.py). See xmmext/steps/fit.py.

    python xspec_analysis.py --profile --obsid <OBSID> [--target-sn 40 --min-width 0.5 ...]

The temperature profile instead: annuli for a target S/N, spectra and a thermal fit per
annulus in results/<OBSID>/profile/. See xmmext/steps/profile.py.
"""
import sys

from common_functions import run_step
from xmmext.steps import fit, profile

if __name__ == "__main__":
    if "--profile" in sys.argv[1:]:
        sys.argv.remove("--profile")
        run_step(profile.main)
    run_step(fit.main)
