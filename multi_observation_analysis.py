#!/usr/bin/env python3
"""Step 5: many observations: run the missing ones, combine the fits.

    python multi_observation_analysis.py --list obs_list.txt [--name NAME] [--run-missing]
        [--workers N] [--scheduler ADDRESS|local] [--model ... --nh ... --redshift ...]

Outputs in results/multi/<NAME>/ (table.csv, table.ecsv, summary.json, parameters.png).
See xmmext/multi.py.
"""
from common_functions import run_step
from xmmext.pipeline.many import main

if __name__ == "__main__":
    run_step(main)
