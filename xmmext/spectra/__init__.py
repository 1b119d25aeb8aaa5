"""Spectra and responses (step 3's work and the profile's per annulus).

  extraction        each camera's source and background spectra, responses and record
  local_background  the background annulus: scaling, the source's own emission, pn OOT, corners
  responses         RMF and extended-source ARF
  grouping          mincounts / minsn / optimal grouping, as specgroup
  ogip              OGIP PHA/RMF/ARF writing and checks
  model_inputs      the files of the modelled background (--background model)
  annuli            annuli for a target S/N (the temperature profile)
"""
