"""xmmext: XMM-Newton EPIC extended-source analysis (native Python and SAS backends).

One module per concern:
  errors       exit codes and the exceptions that carry them
  layout       OBSID/name validation and the on-disk layout of data/ and results/
  fileio       atomic writes and up-to-date checks
  cli          shared command-line plumbing (one-line errors, logging)
  instrument   EPIC cameras: geometry, coordinates, effective area, vignetting, RMF/ARF
  xspec_models XSPEC's compiled model library (xspectrampoline) via ctypes
  atomdb       where the AtomDB files for apec are, and a status command
  simulate     the simulated XMM observation (embedded demo)
  events       reading and validating event lists (simulated, PPS, SAS)
  expression   evselect-style filter expressions on event columns
  gti          good-time intervals, light curves and flare detection
  filtering    step 1: flare-cleaned events (native backend)
  runner       the one place that runs subprocesses (timeouts, logs)
  sas          SAS command builders and output checks
  environment  detection of SAS / HEASoft / native engine for set_env.sh
"""
__version__ = "0.1.0"
