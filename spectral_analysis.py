#!/usr/bin/env python3
"""Step 3: source/background spectra, responses, BACKSCAL and grouping.

    python spectral_analysis.py --obsid <OBSID> [--src-reg F --bkg-reg F] [--cameras ...]
        [--group mincounts=25 | --group optimal | --group minsn=5] [--rmf pn=F --arf pn=F] [--force]

Outputs in results/<OBSID>/spectra/. See xmmext/steps/spectra.py.
"""
from common_functions import run_step
from xmmext.steps.spectra import main

if __name__ == "__main__":
    run_step(main)
