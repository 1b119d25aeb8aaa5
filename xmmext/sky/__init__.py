"""The sky: images, exposure maps, sources and regions (step 2's work).

  camera_maps         each camera's events, coverage and images
  images              ImageGrid, binning, exposure maps
  detect              point-source candidates and their significance
  extent              point-like or extended: a candidate against PSF and PSF x Gaussian
  point_sources       the sources excluded from the regions
  source_lists        user and union source lists (ds9, FITS)
  radial_profile      centre and radial profile; the source radius
  surface_brightness  the beta model fitted to the profile
  extraction_region   ds9 regions read and written, masks, BACKSCAL areas
  regions             step 2's choice of source and background regions
"""
