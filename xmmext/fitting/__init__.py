"""Step 4's engines: joint spectral fits of the cameras with sherpa (+ XSPEC's model
library) or PyXspec. The step itself (options, plan, run, record): :mod:`xmmext.steps.fit`.

  inputs          the spectra to fit and the responses/background each one names
  session         the engine's own sherpa session (a user's ``sherpa.astro.ui`` is left alone)
  sherpa_model    XSPEC components as sherpa models, evaluated on the responses' grids
  sherpa_engine   the fit: statistic, minimisation, undetected components, conf errors
  fluxes          model fluxes with errors from parameter draws
  goodness        simulated goodness of fit
  pyxspec_engine  the same fit as a PyXspec script (NOT RUN here: no HEASoft)
  writers         fit.xcm and fit.csv
  plots           fit.png
"""
