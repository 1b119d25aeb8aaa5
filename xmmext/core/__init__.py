"""What every part of the package stands on (imports nothing else of it).

  errors     the error classes and their exit codes (DESIGN.md)
  paths      the folder layout: data/<OBSID>/, results/<OBSID>/<step>/, OBSID and name checks
  fileio     atomic writes, records, the observation lock, stale temporaries
  runner     the one runner of external processes (timeouts, logs)
  cli        the parser every entry point shares, logging, errors -> one line + exit code
  values     option value parsers (numbers, cameras, CAM=FILE)
  version    the package version (the only copy)
"""
