"""A simulated XMM-Newton EPIC observation of a cluster (the demo), with its truth.

  config          SimConfig, presets, checks, the command line
  observation     simulate(): the scene, each camera's photons and particles, the files
  source_spectra  the cluster's and point sources' photon spectra, cool-core shells
  sky             where the cluster, point sources and an arc are
  events          photons through vignetting, PSF, CCDs, PI; flares; particles
  files           event lists in the PPS layout
  cleaned         SAS-cleaned lists, as SAS users have them
  truth           what tests and benchmarks compare against (emission-weighted kT, counts)
"""
