"""Event lists: reading them (any SAS or PPS name), selecting, screening and cleaning.

  reader        EventList: columns, header, GTIs of any event file; which file is which camera
  selection     evselect-style filter expressions (parsed, never eval'd)
  gti           good-time intervals: combine, light curves, flare thresholds, the SAS GTI layout
  flares        the flare light curves and their plots
  cleaning      step 1's work: screened and flare-cleaned lists
  grades        PATTERN/FLAG selections per camera
  footprint     which sky positions each CCD sees (the geometry of a camera's exposure)
  particles     the particle background's spectral template, 10-12 keV band
  out_of_time   pn out-of-time events
  soft_protons  residual soft protons (in/out-of-FOV ratio or the outer field's excess)
  exposures     several exposures of one camera, merged
"""
