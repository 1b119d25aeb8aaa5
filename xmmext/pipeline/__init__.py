"""Runs of many steps: one observation, a list of them, the demo, and the environment.

  run          ``run_extended_source_analysis.sh`` / ``xmmext run``
  many         a list of observations (process pool or dask), then combine
  environment  which backends and engines this machine has (``set_env.sh`` / ``xmmext env``)
"""
