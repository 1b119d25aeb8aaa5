"""Temperature profile (``xspec_analysis.py --profile``; ``--profile`` in the full pipeline).

Options: :class:`ProfileOptions`. Inputs: step 1's cleaned lists and filtering.json, step
2's src.reg (centre), bkg.reg and regions.json (point sources). Outputs in
results/<OBSID>/profile/: annulus_NN/ (spectra, responses, fit/ with fit.json and fit.xcm),
annuli.reg, profile.png; record profile.json
(``{"annuli": [{"r_in_arcmin", "r_out_arcmin", "kT": {"value", "lower", "upper"}, ...}]}``).
The annuli are then refitted together with the PSF's cross-talk between them
(:mod:`xmmext.fitting.crosstalk`; with ``--background model`` each annulus's fitted
background is held fixed; ``--no-crosstalk`` skips it);
profile.json keeps the independent fits as ``kT_independent`` etc. Native extraction only
(the SAS path has no per-annulus variant yet). The work: :mod:`xmmext.spectra.annuli`.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from xmmext.core.errors import DataError, UsageError
from xmmext.spectra.grouping import DEFAULT_GROUP
from xmmext.core.paths import CAMERAS, ObsPaths
import xmmext.core.values as V
from xmmext.steps.base import Plan, Step, StepResult, execute, finish_plan, option, require
from xmmext.steps.filtering import cleaned_event_inputs
from xmmext.steps.fit import BACKGROUNDS, CONF_LEVELS, FitOptions, FitStep

__all__ = ["MAX_ANNULI", "ProfileOptions", "ProfileStep", "main"]

MAX_ANNULI = 30
log = logging.getLogger("xmmext.spectra.annuli")


@dataclass
class ProfileOptions:
    """Temperature-profile settings (nH, redshift, band, engine and cameras are shared with
    the fit step in the full pipeline)."""
    target_sn: float = option(40.0, "signal-to-noise of each annulus in 0.3-2 keV (net counts / error)",
                              parse=V.positive_float)
    min_width: float = option(0.5, "narrowest annulus (arcmin; the PSF mixes narrower ones)",
                              parse=V.positive_float)
    max_annuli: int = option(12, "most annuli", parse=V.positive_int)
    r_max: float | None = option(None, "outer edge of the profile (arcmin); default: the inner edge of "
                                 "step 2's background annulus", parse=V.positive_float)
    profile_model: str = option("auto", "thermal model per annulus: auto (tbabs*apec with AtomDB, else "
                                "tbabs*zbremss: rest-frame kT) or an XSPEC expression")
    free_abund: bool = option(False, "fit the abundance in each annulus (apec; default frozen at 0.3)",
                              switch=True)
    group: str = option(DEFAULT_GROUP, "grouping of the annuli's spectra (as step 3's --group)")
    background: str = option("auto", "background of each annulus (as the fit's --background)",
                             choices=list(BACKGROUNDS))
    nh: float | None = option(None, "absorbing column (1e22 cm^-2), frozen", parse=V.non_negative_float)
    redshift: float | None = option(None, "source redshift (frozen)", parse=V.non_negative_float)
    emin: float = option(0.5, "lower end of the fitted band (keV)", parse=V.non_negative_float)
    emax: float = option(7.0, "upper end of the fitted band (keV)", parse=V.positive_float)
    engine: str = option("auto", "fitting engine: auto, pyxspec, sherpa", choices=["auto", "pyxspec", "sherpa"])
    conf: int = option(90, "confidence level of the errors (%)", parse=int, choices=list(CONF_LEVELS))
    cameras: tuple = option(CAMERAS, "cameras (subset of mos1,mos2,pn)", parse=V.cameras)
    no_crosstalk: bool = option(False, "fit the annuli independently: no model of the PSF mixing them "
                                "(modelled by default with the sherpa engine)", switch=True)

    def validate(self) -> None:
        for name, check in (("target_sn", V.positive_float), ("min_width", V.positive_float),
                            ("max_annuli", V.positive_int)):
            V.check(self, name, check)
        if self.max_annuli > MAX_ANNULI:
            raise UsageError(f"--max-annuli {self.max_annuli} is more than {MAX_ANNULI}")
        if self.r_max is not None:
            V.check(self, "r_max", V.positive_float)
            if self.r_max > 30:
                raise UsageError(f"--r-max {self.r_max:g} arcmin is beyond the field of view")
        from xmmext.spectra.grouping import parse_group
        parse_group(self.group)
        self.cameras = V.camera_tuple(self.cameras)
        self.fit_options(Path(".")).validate()

    def settled_model(self):
        """The per-annulus model (:func:`~xmmext.fitting.model_choice.settle_model`: tbabs*apec,
        or tbabs*zbremss without AtomDB)."""
        from xmmext.fitting import model_choice as M
        given = None if self.profile_model == "auto" else self.profile_model
        return M.settle_model(given, self.redshift, M.DEFAULT_PROFILE_MODEL, M.FALLBACK_PROFILE_MODEL)

    def model(self) -> str:
        return self.settled_model().text

    def fit_options(self, folder: Path) -> FitOptions:
        """The fit of one annulus (its spectra in ``folder``)."""
        model = self.model()
        freeze = [] if self.free_abund or "apec" not in model else ["apec.Abundanc"]
        return FitOptions(input=str(folder), output=str(folder / "fit"), model=model, nh=self.nh,
                          redshift=self.redshift, emin=self.emin, emax=self.emax, engine=self.engine,
                          conf=self.conf, cameras=self.cameras, freeze=freeze, flux_draws=0,
                          background=self.background)


class ProfileStep(Step):
    name = "profile"
    Options = ProfileOptions
    has_backend = False
    optional = True               # a run makes the profile only when asked (--profile)
    title = "the temperature profile (annuli, kT per annulus: results/<OBSID>/profile/)"
    script = "python xspec_analysis.py --profile {obsid}"

    def check_early(self, opts: ProfileOptions) -> list[str]:
        opts.validate()
        settled = opts.settled_model()
        return [f"profile {settled.fallback_line()}"] if settled.fallback else []

    def plan(self, paths: ObsPaths, opts: ProfileOptions, backend: str = "auto") -> Plan:
        opts.validate()
        settled = opts.settled_model()               # AtomDB and components checked before anything runs
        inputs = cleaned_event_inputs(paths, opts.cameras)
        for name in ("src.reg", "bkg.reg", "regions.json"):
            inputs.append(require(paths.regions / name, "no regions: run step 2 (generate_regions.sh) first"))
        folder = paths.results / "profile"
        return finish_plan(Plan(self, opts, "native", inputs, folder / "profile.json", [folder], paths,
                                decided={"model": settled.text}))

    def run(self, plan: Plan) -> StepResult:
        import xmmext.spectra.annuli as P
        from xmmext.core.fileio import write_text
        from xmmext.sky.extraction_region import read_ds9
        from xmmext.steps.spectra import SpectraOptions, SpectraStep
        paths, opts = plan.context, plan.options
        folder = plan.record.parent
        bkg = read_ds9(paths.regions / "bkg.reg")
        r_max = opts.r_max or (bkg.r_in if bkg.is_annulus else None)
        if not r_max:
            raise UsageError("the background region is not an annulus about the source: give --r-max",
                             paths.regions / "bkg.reg")
        r_max_arcmin = r_max if opts.r_max else r_max * P.ins.SKY_PIX_ARCSEC / 60.0
        prof = P.counts_profile(paths, opts.cameras, r_max_arcmin)
        annuli = P.choose_annuli(prof, opts.target_sn, opts.min_width, opts.max_annuli)
        if len(annuli) < 2:
            raise DataError(f"the source reaches S/N {opts.target_sn:g} in 0.3-2 keV in {len(annuli)} annulus "
                            f"within {r_max_arcmin:.1f}' (lower --target-sn for a profile)", paths.regions / "src.reg")
        exclude = prof["exclude"]
        for old in folder.glob("annulus_[0-9][0-9]"):     # a previous run's annuli would mislead
            shutil.rmtree(old)
        written = [P.write_annuli_regions(folder / "annuli.reg", annuli, prof["centre"], exclude),
                   P.write_annuli_sky_regions(folder / "annuli_sky.reg", annuli, prof["centre"], exclude,
                                              *_pointing(paths, prof["cameras"]))]
        rows = []
        from tqdm import tqdm
        # a bar on a terminal only (disable=None): the annuli take 5-20 s each
        for k, ann in enumerate(tqdm(annuli, desc="profile: annuli", unit="annulus", disable=None, leave=False),
                                start=1):
            sub = folder / f"annulus_{k:02d}"
            reg = write_text(sub / "src.reg", ann.region(prof["centre"], exclude).ds9_physical())
            sopts = SpectraOptions(src_reg=str(reg), bkg_reg=str(paths.regions / "bkg.reg"), group=opts.group,
                                   background=opts.background, cameras=tuple(prof["cameras"]), output=str(sub),
                                   plot=False)
            spec = execute(SpectraStep().plan(paths, sopts, "native"), force=True).summary
            written += [reg, sub / "spectra.json"] + [Path(f) for s in spec["cameras"].values()
                                                       for f in s.get("files", {}).values()]
            rows.append(_fit_annulus(ann, sub, spec, opts, written))
        crosstalk = _crosstalk(paths, folder, annuli, rows, opts)
        _flag_rows(folder, rows)
        written.append(P.plot_profile(folder / "profile.png", prof, rows,
                                      f"{paths.obsid}: {opts.model()} per annulus, {opts.conf}% errors"
                                      + (", PSF cross-talk modelled" if crosstalk.get("modelled") else "")))
        settled = opts.settled_model()
        summary = {"model": settled.text, "model_fallback": settled.fallback, "notes": settled.notes,
                   "background": opts.background, "band_keV": list(P.PROFILE_BAND_KEV),
                   "target_sn": opts.target_sn,
                   "centre": {"x": prof["centre"][0], "y": prof["centre"][1]}, "r_max_arcmin": r_max_arcmin,
                   "cameras": prof["cameras"], "conf_level": opts.conf, "annuli": rows, "crosstalk": crosstalk}
        return StepResult(summary, written)

    def describe(self, summary: dict) -> str:
        parts = [f"{a['r_in_arcmin']:.1f}-{a['r_out_arcmin']:.1f}' kT {a['kT']['value']:.2f}"
                 + (" (FLAGGED)" if a.get("flags") else "") for a in summary.get("annuli", [])]
        return f"{len(parts)} annuli: " + ", ".join(parts)

    def console(self, summary: dict) -> str:
        lines = [f"{len(summary['annuli'])} annuli (S/N {summary['target_sn']:g} in 0.3-2 keV), "
                 f"{summary['model']}, {summary['conf_level']}% errors:"]
        for a in summary["annuli"]:
            kt = a["kT"]
            lo = "?" if kt["lower"] is None else f"{kt['lower']:.2f}"
            hi = "?" if kt["upper"] is None else f"{kt['upper']:.2f}"
            lines.append(f"  {a['r_in_arcmin']:5.2f}-{a['r_out_arcmin']:5.2f}'  kT {kt['value']:.2f} ({lo}-{hi})  "
                         f"S/N {a['sn']:.0f}")
            lines += [f"      FLAG {f}" for f in a.get("flags", [])]
        return "\n".join(lines)


def _pointing(paths: ObsPaths, cameras) -> tuple[float, float]:
    """RA_PNT, DEC_PNT of the observation (from a cleaned event list)."""
    from astropy.io import fits
    h = fits.getheader(paths.clean_events(cameras[0]), "EVENTS")
    return float(h["RA_PNT"]), float(h["DEC_PNT"])


def _fit_annulus(ann, folder: Path, spec: dict, opts: ProfileOptions, written: list) -> dict:
    """Fit one annulus's spectra (the fit step's code, its record in folder/fit/fit.json)."""
    from xmmext.fitting.crosstalk import ROW_PARAMETERS
    row = {"r_in_arcmin": ann.r_in, "r_out_arcmin": ann.r_out, "sn": ann.sn,
           "net_counts_0.3-2keV": ann.counts - ann.background, "folder": folder.name}
    ok = [c for c, s in spec["cameras"].items() if s.get("status") == "ok"]
    if not ok:
        raise DataError(f"annulus {ann.r_in:.2f}-{ann.r_out:.2f}': no camera gives a spectrum", folder)
    fopts = replace(opts.fit_options(folder), cameras=tuple(ok))
    step = FitStep()
    rec = execute(step.plan(None, fopts), force=True)
    written.append(folder / "fit" / "fit.json")
    written += [p for p in (folder / "fit").iterdir() if p.is_file()]
    res = rec.summary
    pars = res["parameters"]
    thermal = next(k.split(".")[0] for k in pars if k.endswith(".kT"))
    for key, par in ROW_PARAMETERS:
        p = pars.get(f"{thermal}.{par}")
        if p is not None and not (key == "abund" and p["frozen"]):
            row[key] = {k: p[k] for k in ("value", "lower", "upper")}
    row["statistic"] = res["statistic"]
    row["engine"] = res.get("engine")
    row["cameras"] = ok
    row["net_counts"] = {c: spec["cameras"][c]["net_counts"] for c in ok}
    return row


def _flag_rows(folder: Path, rows: list[dict]) -> None:
    """Every annulus's ``flags``: its fit's and those of its final values."""
    from xmmext.core.fileio import read_record
    from xmmext.fitting.crosstalk import ROW_PARAMETERS
    from xmmext.fitting.flags import row_flags
    for row in rows:
        fit = read_record(folder / row["folder"] / "fit" / "fit.json")
        row["flags"] = row_flags(row, fit, ROW_PARAMETERS)


def _crosstalk(paths: ObsPaths, folder: Path, annuli, rows: list[dict], opts: ProfileOptions) -> dict:
    """Refit all annuli together with the PSF cross-talk between them (the rows' kT, norm
    and abundance become the joint fit's; the independent fits stay as ``*_independent``).
    Returns what profile.json records about it, ``modelled`` False with the reason when
    it is not done."""
    from xmmext.core.fileio import read_record
    from xmmext.fitting.inputs import find_spectra, model_for_fit
    from xmmext.sky.surface_brightness import is_usable
    reason = None
    if opts.no_crosstalk:
        reason = "--no-crosstalk"
    elif any(r.get("engine") != "sherpa" for r in rows):
        reason = "the cross-talk fit needs the sherpa engine"
    sb = read_record(paths.regions / "regions.json").get("surface_brightness")
    if reason is None and not is_usable(sb):
        reason = "step 2 has no beta model of the source (regions.json surface_brightness)"
    if reason is not None:
        return {"modelled": False, "reason": reason}
    from xmmext.fitting import crosstalk as X
    spectra = [find_spectra(folder / r["folder"], tuple(r["cameras"])) for r in rows]
    edges = [a.r_in for a in annuli] + [annuli[-1].r_out]
    fopts = opts.fit_options(folder)
    coeffs = X.crosstalk_coefficients(spectra, edges, sb, fopts)
    backgrounds = None
    used = read_record(folder / rows[0]["folder"] / "fit" / "fit.json").get("background_choice", {}).get("used")
    if used == "model":                 # each annulus's fitted background, held fixed
        from xmmext.fitting.background_parts import SOURCE_BACKGROUND_FILE, read_source_background
        backgrounds = [{cam: read_source_background(folder / r["folder"] / "fit" / SOURCE_BACKGROUND_FILE, cam)
                        for cam in r["cameras"]} for r in rows]
    try:
        res = X.fit_crosstalk(spectra, coeffs, model_for_fit(opts.model()), fopts, rows, backgrounds)
    except Exception as exc:     # sherpa's errors are many; the independent fits still stand
        log.warning("profile: the joint cross-talk fit failed (%s); the annuli's independent fits are kept", exc)
        return {"modelled": False, "reason": f"the joint cross-talk fit failed: {exc}"}
    thermal = next(k.split(".")[0] for k in res["annuli"][0] if k.endswith(".kT"))
    for row, pars in zip(rows, res["annuli"]):
        for key, par in X.ROW_PARAMETERS:
            if key in row:
                row[f"{key}_independent"] = row[key]
                p = pars[f"{thermal}.{par}"]
                row[key] = {k: p[k] for k in ("value", "lower", "upper")}
    return {"modelled": True, "statistic": res["statistic"], "cross_norm": res["cross_norm"],
            "own_share": {cam: [float(c[i, i]) for i in range(len(rows))] for cam, c in coeffs.items()},
            "notes": res["notes"]}


def main(argv=None) -> int:
    from xmmext.steps.cli import step_main
    return step_main(ProfileStep(), argv, "xspec_analysis.py --profile",
                     "Temperature profile: annuli for a target S/N, spectra and a thermal fit per annulus.")
