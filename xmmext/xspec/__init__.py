"""XSPEC's model library (the compiled models through ``xspectrampoline``, or HEASoft's).

  library     loading the library, evaluating components, abundances and cross-sections
  expression  model expressions (``tbabs*(apec+powerlaw)``) parsed into components
  probe       a one-time check that every component evaluates (cached verdicts)
  atomdb      finding the AtomDB files apec needs
"""
