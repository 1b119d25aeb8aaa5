"""SAS backend: SAS task command lines per step, and the one runner that runs them.

  tasks      SasTask, the runner (private folder, PFILES, judge, move out), SAS version,
             this observation's SAS_CCF/SAS_ODF
  filtering  step 1: cifbuild, odfingest, emchain/epchain, espfilt/tabgtigen, emanom, evselect
  images     step 2: evselect images, eexpmap, edetect_chain
  spectra    step 3: evselect spectra, backscale, rmfgen, arfgen, specgroup


Building a command (pure functions returning :class:`SasTask`) is kept apart from
running it (:func:`xmmext.sas.tasks.run_tasks`), as DAXA separates its command builders from its runner.
Each task runs in its own temporary folder with its own PFILES (so parallel workers
never share parameter files), HEADASNOQUERY set, a timeout that kills the real process
group, stdout/stderr kept in ``results/<OBSID>/logs/``, and success decided from the
expected outputs existing and no ``** task: error`` line.

Parameter names follow the SAS task documentation. Version differences handled:
  * espfilt: SAS >= 20 takes ``eventfile=`` and offers ``method=histogram`` with
    ``withlongnames=yes`` outputs ``<inst><exp>-gti-<elow>-<ehigh>.fits``; older SAS
    takes ``eventset=`` and only ``method=ratio``.
  * SAS >= 22 espfilt no longer applies the FLAG filter: the pipeline applies the
    standard expression (with FLAG==0) itself in the final evselect, on every version.

NOT RUN AGAINST A REAL SAS: no SAS is installed where this was written. The command
lines and the output/error handling are tested with stand-in executables.
"""
