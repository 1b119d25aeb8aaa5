#!/usr/bin/env python3
"""Step 4: joint fits of the cameras' spectra, e.g. tbabs*(apec+powerlaw).

    python xspec_analysis.py --input results/<OBSID>/spectra [--model "tbabs*(apec+powerlaw)"]
        [--nh 0.03 --nh-free] [--redshift 0.05] [--abund-table aspl|angr|wilm] [--stat cstat|wstat|chi2]
        [--no-background] [--emin 0.5 --emax 7.0] [--freeze ... --set par=value ...]
        [--engine auto|pyxspec|sherpa] [--cameras ...] [--output DIR] [--conf 90|68]

Outputs fit.json, fit.csv, fit.xcm, fit.png (and fit_pyxspec.py). See xmmext/steps/fit.py.
"""
from common_functions import run_step
from xmmext.steps.fit import main

if __name__ == "__main__":
    run_step(main)
