"""A simulated XMM-Newton EPIC observation of a galaxy cluster (the embedded demo).

``python -m xmmext.simulate.observation --obsid 0999990101 [--workdir DIR] [--seed N] ...`` writes
``data/<OBSID>/event/<cam>_evt.fits`` in the PPS event-list layout and
``data/<OBSID>/truth.json`` with every input parameter and the counts drawn.

Components (each with its own spectrum, spatial and time behaviour):
  cluster       beta-model surface brightness, tbabs*apec (tbabs*zbremss at the
                redshift without AtomDB: the pipeline's fallback), vignetted, through the PSF; isothermal, or with a cool core
                (``--kt-centre``: kT rising with radius, drawn in radial shells)
  point_sources tbabs*powerlaw AGN with a Euclidean logN-logS, through the PSF
  cxb           cosmic X-ray background, tbabs*powerlaw(1.46), vignetted, uniform
  foreground    Galactic soft thermal emission (kT 0.2 keV), unabsorbed, vignetted
  qpb           quiescent particle background: not vignetted, on the whole CCD area
                including the out-of-FOV corners, hard continuum + fluorescence lines whose
                strength varies across the detector (pn Cu/Ni/Zn weak over the centre)
  sp_quiescent  residual soft protons at a low constant level (FOV only), vignetted less
                steeply than X-rays
  sp_flares     soft-proton flares covering ``--flare-fraction`` of the exposure
pn photons include out-of-time events (6.3%, moved along their CCD column). ``--preset``
picks a cluster: the demo, a faint distant one, one that fills the field, a cool core.

Photons are drawn per camera from the spectrum x on-axis effective area, kept with
probability vignetting(theta, E), placed on the detector through the CCD layout (chip
gaps and dead CCDs lose them), and given a PI by the Gaussian redistribution of the
instrument model, so the native responses describe the simulated data exactly.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
from astropy.time import Time

import xmmext.instrument as ins
import xmmext.xspec.library as xm
from xmmext.xspec.atomdb import find_apec_files
from xmmext.core.cli import base_parser, run_main, setup_logging
from xmmext.core.errors import UsageError
from xmmext.core.fileio import atomic_path, write_fits, write_json
from xmmext.simulate.events import (Events, beta_cdf, beta_positions, ccd_area_arcmin2, ccd_uniform_positions, concat_events,
                         detect, disk,
                         flare_intervals, flare_profile_times, particle_energies, photon_component, psf_blur,
                         soft_protons, uniform_times)
from xmmext.simulate.files import event_hdulist
from xmmext.simulate.sky import arc_positions, cluster_centre, draw_point_sources

from xmmext.core.paths import ObsPaths, parse_cameras

SKY_DISK_ARCMIN = 17.0
THERMAL_MODELS = ("auto", "apec", "zbremss", "bremss")

log = __import__("logging").getLogger("xmmext.simulate.observation")

# Quiescent particle background, counts/s per arcmin^2 of CCD (0.2 keV - top of PI range)
_QPB_RATE = {"pn": 5.0e-3, "mos": 2.0e-3}
# Fluorescence lines in the QPB: (energy keV, fraction of QPB events)
# (below 6 keV only: above it the measured continuum template already holds pn's Cu/Ni/Zn)
_FLARE_PEAK_PN = 35.0        # counts/s (full band) for a flare of amplitude 1 in pn
_MOS_FLARE_SCALE = 0.5
_SP_QUIESCENT_PN = 0.3       # counts/s
# per-event component labels (data/<OBSID>/truth_<cam>_components.npy, in file order)
COMPONENT_CODES = {"cluster": 1, "point_sources": 2, "cxb": 3, "foreground": 4, "qpb": 5,
                   "sp_quiescent": 6, "sp_flares": 7, "out_of_time": 8, "arc": 9}


@dataclass
class SimConfig:
    """Everything the simulation depends on (all recorded in truth.json)."""
    obsid: str = "0999990101"
    seed: int = 42
    exposure: float = 30000.0
    cameras: list = field(default_factory=lambda: ["mos1", "mos2", "pn"])
    ra_pnt: float = 150.50
    dec_pnt: float = 2.20
    pa_pnt: float = 60.0
    date_obs: str = "2019-05-01T12:00:00"
    filter: str = "Medium"
    # cluster
    kt: float = 5.0
    abund: float = 0.3
    redshift: float = 0.05
    nh: float = 0.03
    norm: float | None = None          # None: set from cluster_rate
    cluster_rate: float = 5.0          # pn counts/s on-axis (before vignetting, chips)
    offset_arcmin: float = 0.5         # cluster centre from the pointing
    offset_pa_deg: float = 30.0
    core_radius_arcmin: float = 1.5
    beta: float = 0.67
    r_max_arcmin: float = 20.0
    thermal_model: str = "auto"        # auto (apec with AtomDB, else zbremss) | apec | zbremss | bremss
    abund_table: str = "aspl"
    # others
    flare_fraction: float = 0.2
    n_flares: int = 4
    flare_scale: float = 1.0           # multiplies the flare peak rates
    n_point_sources: int = 15
    ps_min_counts: float = 60.0        # pn counts of the faintest point source
    ps_max_counts: float = 3000.0
    sas_cleaned: bool = False          # write SAS-cleaned lists (<cam>_exp1_clean_evts.fits) instead
    kt_centre: float | None = None     # cool core: kT at the centre (None = isothermal at kt)
    cool_radius_arcmin: float = 1.5    # kT reaches (kt_centre + kt) / 2 here
    pn_oot: bool = True                # pn out-of-time events
    cluster_ra: float | None = None    # cluster centre on the sky (default: offset from the pointing)
    cluster_dec: float | None = None
    sky_seed: int | None = None        # point sources fixed on the sky about the cluster (shared by pointings)
    arc_fraction: float = 0.0          # an arc of extra emission (share of the cluster's norm)
    arc_radius_arcmin: float = 1.0
    arc_width_arcsec: float = 12.0
    arc_length_deg: float = 120.0
    arc_pa_deg: float = 45.0
    sp_scale: float = 1.0              # residual (quiescent) soft protons: x the default 0.3 pn counts/s
    sp_index: float = 0.8              # their counts-space spectrum E^-index (lower: harder)


# Named clusters for --preset (fields of SimConfig; explicit options override them)
PRESETS = {
    "demo": {},
    "faint-distant": {"kt": 4.0, "redshift": 0.45, "cluster_rate": 0.5, "core_radius_arcmin": 0.35,
                      "r_max_arcmin": 6.0, "n_point_sources": 25},
    "fills-field": {"kt": 6.0, "redshift": 0.02, "cluster_rate": 30.0, "core_radius_arcmin": 6.0,
                    "r_max_arcmin": 40.0, "beta": 0.6},
    "cool-core": {"kt": 6.0, "kt_centre": 3.0, "cool_radius_arcmin": 1.5, "cluster_rate": 10.0,
                  "core_radius_arcmin": 1.0},
}
# radial shells (arcmin) in which a cool-core cluster is drawn, each isothermal
_SHELL_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0,
                30.0, 40.0)


def validate(cfg: SimConfig) -> None:
    """Refuse impossible settings before any file is touched (exit 2)."""
    ObsPaths.of(cfg.obsid, ".")          # validates the OBSID
    checks = [
        (cfg.exposure > 0, "exposure must be positive"),
        (cfg.exposure <= 2.0e6, "exposure above 2 Ms is not an XMM observation"),
        (0.0 <= cfg.flare_fraction <= 1.0, "flare fraction must be in [0, 1]"),
        (cfg.flare_scale > 0, "flare scale must be positive"),
        (cfg.kt > 0, "kT must be positive"),
        (cfg.abund >= 0, "abundance must be >= 0"),
        (cfg.nh >= 0, "nH must be >= 0"),
        (cfg.redshift >= 0, "redshift must be >= 0"),
        (cfg.norm is None or cfg.norm > 0, "norm must be positive"),
        (cfg.cluster_rate > 0, "cluster rate must be positive"),
        (cfg.beta > 0.5, "beta must be > 0.5 for a finite flux"),
        (cfg.core_radius_arcmin > 0, "core radius must be positive"),
        (cfg.n_point_sources >= 0, "number of point sources must be >= 0"),
        (cfg.n_flares >= 1, "number of flares must be >= 1"),
        (0 <= cfg.offset_arcmin < ins.FOV_RADIUS_ARCMIN, "cluster offset must be inside the FOV"),
        (cfg.thermal_model in THERMAL_MODELS, f"thermal model must be one of {', '.join(THERMAL_MODELS)}"),
        (-90 <= cfg.dec_pnt <= 90, "pointing Dec out of range"),
        (cfg.kt_centre is None or cfg.kt_centre > 0, "central kT must be positive"),
        (cfg.cool_radius_arcmin > 0, "cool-core radius must be positive"),
        (0 < cfg.r_max_arcmin <= 40, "cluster extent must be in (0, 40] arcmin"),
        (cfg.seed >= 0, "seed must be >= 0"),
        ((cfg.cluster_ra is None) == (cfg.cluster_dec is None), "give both cluster RA and Dec, or neither"),
        (0 <= cfg.arc_fraction <= 1, "arc fraction must be in [0, 1]"),
        (cfg.arc_radius_arcmin > 0 and cfg.arc_width_arcsec > 0 and 0 < cfg.arc_length_deg <= 360,
         "arc radius, width and length must be positive (length <= 360 degrees)"),
        (cfg.sky_seed is None or cfg.sky_seed >= 0, "sky seed must be >= 0"),
        (0 <= cfg.sp_scale <= 1000, "soft-proton scale must be in [0, 1000]"),
        (0 <= cfg.sp_index < 0.99 or 1.01 < cfg.sp_index <= 4, "soft-proton index must be in [0, 4], not 1"),
    ]
    for ok, msg in checks:
        if not ok:
            raise UsageError(msg)
    if not cfg.cameras:
        raise UsageError("no camera to simulate")
    if cfg.filter.lower() not in ("thin", "medium", "thick"):
        raise UsageError(f"unknown filter {cfg.filter!r}")


# --- spectra -------------------------------------------------------------------------
def _egrid() -> np.ndarray:
    return np.append(ins.RESP_ELO, ins.RESP_EHI[-1])


def _thermal_model(cfg: SimConfig) -> str:
    if cfg.thermal_model != "auto":
        return cfg.thermal_model
    return "apec" if find_apec_files() else "zbremss"


def cluster_photon_spectrum(cfg: SimConfig, model: str, kt: float | None = None) -> np.ndarray:
    """Photons/cm^2/s per response-grid bin of the whole cluster for norm = 1 (at ``kt``,
    default the cluster's)."""
    e = _egrid()
    kt = cfg.kt if kt is None else kt
    absorb = xm.evaluate("tbabs", [cfg.nh], e)
    if model == "apec":
        return absorb * xm.evaluate("apec", [kt, cfg.abund, cfg.redshift], e)
    if model == "zbremss":
        return absorb * xm.evaluate("zbremss", [kt, cfg.redshift], e)
    return absorb * xm.evaluate("bremss", [kt], e)


def cluster_shells(cfg: SimConfig) -> list[dict]:
    """The cluster as isothermal radial shells: r_in, r_out (arcmin), kT, and the share of
    the norm (beta-model flux share). One shell when isothermal."""
    total = float(beta_cdf(cfg, cfg.r_max_arcmin))
    if cfg.kt_centre is None:
        return [{"r_in": 0.0, "r_out": cfg.r_max_arcmin, "kT": cfg.kt, "norm_fraction": 1.0}]
    edges = [r for r in _SHELL_EDGES if r < cfg.r_max_arcmin] + [cfg.r_max_arcmin]
    shells = []
    for r0, r1 in zip(edges[:-1], edges[1:]):
        share = float(beta_cdf(cfg, r1) - beta_cdf(cfg, r0)) / total
        shells.append({"r_in": r0, "r_out": r1, "kT": cool_core_kt(cfg, 0.5 * (r0 + r1)), "norm_fraction": share})
    return shells


def cluster_kt_at(cfg: SimConfig, r_arcmin: float) -> float:
    """The cluster's kT at a radius (isothermal, or the cool core's profile)."""
    return cfg.kt if cfg.kt_centre is None else cool_core_kt(cfg, r_arcmin)


def cool_core_kt(cfg: SimConfig, r_arcmin: float) -> float:
    """kT(r) of a cool core: kt_centre at the centre rising to kt, x^2/(1+x^2) with x = r/r_cool."""
    x2 = (r_arcmin / cfg.cool_radius_arcmin) ** 2
    return float(cfg.kt_centre + (cfg.kt - cfg.kt_centre) * x2 / (1.0 + x2))


def _powerlaw_spectrum(gamma: float, nh: float) -> np.ndarray:
    e = _egrid()
    return xm.evaluate("tbabs", [nh], e) * xm.evaluate("powerlaw", [gamma], e)


def _det_radius_arcmin(cam: ins.Camera, cfg: SimConfig, x, y) -> np.ndarray:
    """Distance from the detector's centre (the field stop's centre), arcmin."""
    detx, dety = ins.sky_to_det(cam, x, y, cfg.pa_pnt)
    return np.hypot(detx - cam.fov_centre_det[0], dety - cam.fov_centre_det[1]) / 60.0


def _counts_rate(photons: np.ndarray, cam: ins.Camera, filt: str) -> float:
    emid = 0.5 * (ins.RESP_ELO + ins.RESP_EHI)
    return float(np.sum(photons * cam.on_axis_area(emid, filt)))


# --- the observation -------------------------------------------------------------------
def simulate(cfg: SimConfig, workdir=None) -> dict:
    """Simulate all cameras, write the event lists and truth.json; return the truth.

    A simulation that fails part-way (e.g. a full disk) removes the data folder it
    started, so no observation without its event lists or truth is left behind."""
    validate(cfg)
    paths = ObsPaths.of(cfg.obsid, workdir)
    fresh = not paths.data.exists()
    try:
        return _simulate(cfg, paths)
    except BaseException:
        if fresh:
            import shutil
            shutil.rmtree(paths.data, ignore_errors=True)
        raise


def _simulate(cfg: SimConfig, paths: ObsPaths) -> dict:
    xm.set_abundances(cfg.abund_table)
    model = _thermal_model(cfg)
    if model == "apec":
        from xmmext.xspec.library import configure_xspec
        configure_xspec()
    seq = np.random.SeedSequence(cfg.seed)
    rng_global, *cam_seeds = [np.random.default_rng(s) for s in seq.spawn(1 + 3)]

    tstart = float((Time(cfg.date_obs, scale="utc").tt
                    - Time(ins.MJDREF, format="mjd", scale="tt")).sec)
    tstart = float(np.floor(tstart))
    tstop = tstart + cfg.exposure
    flares = flare_intervals(rng_global, cfg, tstart)
    flare_amp = rng_global.uniform(0.7, 2.0, len(flares))

    # cluster centre and normalisation
    ccx, ccy = cluster_centre(cfg)
    c_ra, c_dec = ins.sky_to_radec(ccx, ccy, cfg.ra_pnt, cfg.dec_pnt)
    shells = cluster_shells(cfg)
    unit_specs = [cluster_photon_spectrum(cfg, model, sh["kT"]) * sh["norm_fraction"] for sh in shells]
    pn = ins.camera("pn")
    norm = cfg.norm if cfg.norm is not None else cfg.cluster_rate / _counts_rate(sum(unit_specs), pn, cfg.filter)
    ps_xy, ps_counts, ps_gamma = draw_point_sources(cfg, rng_global, ccx, ccy)
    ps_spectra = []
    for g, cts in zip(ps_gamma, ps_counts):
        s = _powerlaw_spectrum(g, cfg.nh)
        ps_spectra.append(s * cts / cfg.exposure / _counts_rate(s, pn, cfg.filter))

    # sky background spectra per arcmin^2
    # sky photons are drawn on a disk that covers every camera's field stop (their centres
    # lie up to ~2' from the pointing); the detector keeps what falls in its own FOV
    fov_arcmin2 = np.pi * SKY_DISK_ARCMIN ** 2
    cxb_spec = _powerlaw_spectrum(1.46, cfg.nh) * (11.6 / 1.1818e7) * fov_arcmin2
    fg_spec = xm.evaluate("bremss", [0.2], _egrid()) * 1.2e-5 * fov_arcmin2 if model != "apec" \
        else xm.evaluate("apec", [0.2, 1.0, 0.0], _egrid()) * 4.0e-6 * fov_arcmin2

    truth_counts: dict[str, dict[str, int]] = {}
    ps_truth = [{"ra": 0.0, "dec": 0.0, "counts": {}, "gamma": float(g)} for g in ps_gamma]
    for k, (px, py) in enumerate(ps_xy):
        r, d = ins.sky_to_radec(px, py, cfg.ra_pnt, cfg.dec_pnt)
        ps_truth[k]["ra"], ps_truth[k]["dec"] = float(r[0]), float(d[0])
    fov_px = SKY_DISK_ARCMIN * 60 / ins.SKY_PIX_ARCSEC
    files = {}
    for cam_name in cfg.cameras:
        cam = ins.camera(cam_name)
        rng = cam_seeds[["mos1", "mos2", "pn"].index(cam_name)]
        active = cam.active_ccds(cfg.date_obs)
        times = lambda n: uniform_times(rng, n, tstart, tstop)   # noqa: E731
        comps: dict[str, Events] = {}
        comps["cluster"] = psf_blur(rng, cam, concat_events([photon_component(
            rng, cam, cfg, spec * norm, beta_positions(rng, cfg, ccx, ccy, sh["r_in"], sh["r_out"]), times)
            for sh, spec in zip(shells, unit_specs)]))
        if cfg.arc_fraction > 0:         # drawn only when asked: other simulations stay as they were
            arc_spec = cluster_photon_spectrum(cfg, model, cluster_kt_at(cfg, cfg.arc_radius_arcmin))
            comps["arc"] = psf_blur(rng, cam, photon_component(
                rng, cam, cfg, arc_spec * norm * cfg.arc_fraction, arc_positions(rng, cfg, ccx, ccy), times))
        ps_events = []
        for k, ((px, py), spec) in enumerate(zip(ps_xy, ps_spectra)):
            ev = psf_blur(rng, cam, photon_component(
                rng, cam, cfg, spec, lambda n, px=px, py=py: (np.full(n, px), np.full(n, py)), times))
            ev.source_index = k
            ps_events.append(ev)
        comps["cxb"] = photon_component(rng, cam, cfg, cxb_spec, lambda n: disk(rng, n, fov_px), times)
        comps["foreground"] = photon_component(rng, cam, cfg, fg_spec, lambda n: disk(rng, n, fov_px), times)
        # quiescent particle background (not vignetted, whole CCD area)
        kind = "pn" if cam_name == "pn" else "mos"
        n_qpb = rng.poisson(_QPB_RATE[kind] * ccd_area_arcmin2(cam, active) * cfg.exposure)
        qx, qy = ccd_uniform_positions(rng, cam, cfg, n_qpb, active)
        e_qpb, is_line, kept = particle_energies(rng, cam, n_qpb, _det_radius_arcmin(cam, cfg, qx, qy))
        comps["qpb"] = Events(times(int(kept.sum())), e_qpb[kept], qx[kept], qy[kept], particle=True,
                              redistribute=is_line[kept])
        # soft protons: counts-space spectrum E^-0.8 over the PI range, vignetted, FOV only
        scale = 1.0 if cam_name == "pn" else _MOS_FLARE_SCALE
        comps["sp_quiescent"] = soft_protons(
            rng, cam, cfg, times(rng.poisson(_SP_QUIESCENT_PN * cfg.sp_scale * scale * cfg.exposure)), fov_px)
        comps["sp_flares"] = soft_protons(
            rng, cam, cfg, flare_profile_times(rng, flares, flare_amp, _FLARE_PEAK_PN * scale * cfg.flare_scale), fov_px)

        # out-of-time photons of the sky get their own label (8): they are not where their
        # source is; displaced soft protons stay soft protons (they are spread anyway)
        columns, counts, labels = [], {}, []
        n_oot = 0
        for name, ev in comps.items():
            cols, oot = detect(rng, cam, cfg, ev, active, fov_only=not ev.particle)
            if name.startswith("sp_"):
                oot = np.zeros_like(oot)
            n_oot += int(oot.sum())
            counts[name] = int(len(cols["TIME"]) - oot.sum())
            columns.append(cols)
            labels.append(np.where(oot, COMPONENT_CODES["out_of_time"], COMPONENT_CODES[name]).astype(np.uint8))
        n_ps_total = 0
        for ev in ps_events:
            cols, oot = detect(rng, cam, cfg, ev, active, fov_only=True)
            n_oot += int(oot.sum())
            ps_truth[ev.source_index]["counts"][cam_name] = int(len(cols["TIME"]) - oot.sum())
            n_ps_total += len(cols["TIME"]) - int(oot.sum())
            columns.append(cols)
            labels.append(np.where(oot, COMPONENT_CODES["out_of_time"],
                                   COMPONENT_CODES["point_sources"]).astype(np.uint8))
        counts["point_sources"] = int(n_ps_total)
        counts["out_of_time"] = n_oot
        truth_counts[cam_name] = counts
        merged = {k: np.concatenate([c[k] for c in columns]) for k in columns[0]}
        order = np.argsort(merged["TIME"], kind="stable")
        merged = {k: v[order] for k, v in merged.items()}
        label_path = paths.data / f"truth_{cam_name}_components.npy"
        labels_sorted = np.concatenate(labels)[order]
        hdul = event_hdulist(cam, cfg, merged, tstart, tstop, active, c_ra[0], c_dec[0])
        dest = paths.event_dir / f"{cam_name}_evt.fits"
        write_fits(dest, hdul, checksum=False)   # no CHECKSUM: same seed -> identical bytes
        if cfg.sas_cleaned:                      # the list a SAS user has: screened, flares cut
            from xmmext.simulate.cleaned import cleaned_name, write_sas_cleaned
            clean = paths.event_dir / cleaned_name(cam_name)
            keep = write_sas_cleaned(dest, clean, cam_name, cam.standard_expression, flares)
            dest.unlink()
            dest, labels_sorted = clean, labels_sorted[keep]
        with atomic_path(label_path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, labels_sorted)
        files[cam_name] = str(dest)
        log.info("simulated %s: %d events (%s)", cam_name, len(merged["TIME"]),
                 ", ".join(f"{k} {v}" for k, v in counts.items()))

    truth = {
        "obsid": cfg.obsid, "seed": cfg.seed, "exposure_s": cfg.exposure,
        "tstart": tstart, "tstop": tstop, "date_obs": cfg.date_obs,
        "pointing": {"ra": cfg.ra_pnt, "dec": cfg.dec_pnt, "pa": cfg.pa_pnt},
        "filter": cfg.filter,
        "cluster": {"ra": float(c_ra[0]), "dec": float(c_dec[0]), "x": float(ccx), "y": float(ccy),
                    "kT": cfg.kt, "abund": cfg.abund if model == "apec" else None,
                    "redshift": cfg.redshift, "nH": cfg.nh, "norm": float(norm),
                    "model": f"tbabs*{model}", "abund_table": cfg.abund_table,
                    "core_radius_arcmin": cfg.core_radius_arcmin, "beta": cfg.beta,
                    "r_max_arcmin": cfg.r_max_arcmin,
                    "kT_profile": None if cfg.kt_centre is None else {
                        "kT_centre": cfg.kt_centre, "kT_outer": cfg.kt, "r_cool_arcmin": cfg.cool_radius_arcmin,
                        "shells": shells},
                    "arc": None if cfg.arc_fraction <= 0 else {
                        "fraction_of_norm": cfg.arc_fraction, "radius_arcmin": cfg.arc_radius_arcmin,
                        "width_arcsec": cfg.arc_width_arcsec, "length_deg": cfg.arc_length_deg, "pa_deg": cfg.arc_pa_deg},
                    "note": {"apec": None,
                             "zbremss": "AtomDB absent: zbremss continuum at the redshift (no lines, no abundance)",
                             "bremss": "bremss continuum (no lines, no abundance, redshift not applied)"}[model]},
        "flares": flares, "flare_amplitudes": [float(a) for a in flare_amp],
        "point_sources": ps_truth,
        "counts": truth_counts,
        "component_codes": COMPONENT_CODES,
        "active_ccds": {c: ins.camera(c).active_ccds(cfg.date_obs) for c in cfg.cameras},
        "config": asdict(cfg),
        "files": files,
    }
    write_json(paths.truth, truth)
    return truth


# --- command line ---------------------------------------------------------------------
# option -> SimConfig field (options left out take the preset's value, else SimConfig's)
_OPTION_FIELDS = {"obsid": "obsid", "seed": "seed", "exposure": "exposure", "kt": "kt", "abund": "abund",
                  "redshift": "redshift", "nh": "nh", "norm": "norm", "cluster_rate": "cluster_rate",
                  "offset_arcmin": "offset_arcmin", "core_radius": "core_radius_arcmin", "beta": "beta",
                  "r_max": "r_max_arcmin", "kt_centre": "kt_centre", "cool_radius": "cool_radius_arcmin",
                  "flare_fraction": "flare_fraction", "n_flares": "n_flares", "flare_scale": "flare_scale",
                  "n_point_sources": "n_point_sources", "thermal_model": "thermal_model", "filter": "filter",
                  "date_obs": "date_obs", "cluster_ra": "cluster_ra", "cluster_dec": "cluster_dec",
                  "sky_seed": "sky_seed", "arc_fraction": "arc_fraction", "arc_radius": "arc_radius_arcmin",
                  "arc_width": "arc_width_arcsec", "arc_length": "arc_length_deg", "arc_pa": "arc_pa_deg",
                  "sp_scale": "sp_scale", "sp_index": "sp_index"}


def build_parser():
    from argparse import SUPPRESS
    from xmmext.core.values import finite_float
    p = base_parser("python -m xmmext.simulate.observation", "Simulate an XMM-Newton EPIC observation "
                    "of a galaxy cluster (event lists + truth.json).")
    d = SimConfig()
    p.argument_default = SUPPRESS      # options not given are absent: the preset fills them
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS),
                   help="a named cluster; options given explicitly override it (default %(default)s)")
    p.add_argument("--obsid", help=f"10-digit OBSID (default {d.obsid})")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--exposure", type=finite_float, help=f"seconds (default {d.exposure:g})")
    p.add_argument("--cameras", default="mos1,mos2,pn")
    p.add_argument("--kt", type=finite_float, help=f"cluster temperature (outer, with a cool core), keV (default {d.kt:g})")
    p.add_argument("--kt-centre", type=finite_float, help="cool core: central kT, keV (default: isothermal)")
    p.add_argument("--cool-radius", type=finite_float,
                   help=f"cool core: radius where kT is half-way, arcmin (default {d.cool_radius_arcmin:g})")
    p.add_argument("--abund", type=finite_float, help=f"abundance (apec only; default {d.abund:g})")
    p.add_argument("--redshift", type=finite_float, help=f"default {d.redshift:g}")
    p.add_argument("--nh", type=finite_float, help=f"absorbing column, 1e22 cm^-2 (default {d.nh:g})")
    p.add_argument("--norm", type=finite_float, help="XSPEC norm of the thermal model "
                   "(default: set by --cluster-rate)")
    p.add_argument("--cluster-rate", type=finite_float,
                   help=f"pn on-axis cluster count rate used to set the norm (default {d.cluster_rate:g})")
    p.add_argument("--offset-arcmin", type=finite_float,
                   help="cluster centre distance from the pointing (arcmin)")
    p.add_argument("--core-radius", type=finite_float, help=f"arcmin (default {d.core_radius_arcmin:g})")
    p.add_argument("--beta", type=finite_float, help=f"default {d.beta:g}")
    p.add_argument("--r-max", type=finite_float, help=f"cluster extent, arcmin (default {d.r_max_arcmin:g})")
    p.add_argument("--flare-fraction", type=finite_float)
    p.add_argument("--n-flares", type=int)
    p.add_argument("--flare-scale", type=finite_float, help="multiplies flare peak rates")
    p.add_argument("--n-point-sources", type=int)
    p.add_argument("--thermal-model", choices=list(THERMAL_MODELS))
    p.add_argument("--filter", choices=["Thin", "Medium", "Thick"])
    p.add_argument("--date-obs")
    p.add_argument("--cluster-ra", type=finite_float, help="cluster centre RA, deg (default: --offset-arcmin "
                   "from the pointing); with --sky-seed, pointings of one cluster")
    p.add_argument("--cluster-dec", type=finite_float, help="cluster centre Dec, deg")
    p.add_argument("--sky-seed", type=int, help="point sources fixed on the sky about the cluster, drawn from "
                   "this seed (the same sources in every pointing with the same sky seed)")
    p.add_argument("--arc-fraction", type=finite_float, help="an arc of extra emission in the core (a sloshing "
                   "cold front), as a share of the cluster's norm (default 0: none)")
    p.add_argument("--arc-radius", type=finite_float, help=f"arc radius, arcmin (default {d.arc_radius_arcmin:g})")
    p.add_argument("--arc-width", type=finite_float, help=f"arc width (Gaussian sigma), arcsec (default {d.arc_width_arcsec:g})")
    p.add_argument("--arc-length", type=finite_float, help=f"arc length, degrees (default {d.arc_length_deg:g})")
    p.add_argument("--arc-pa", type=finite_float, help=f"arc position angle, degrees east of north (default {d.arc_pa_deg:g})")
    p.add_argument("--sp-scale", type=finite_float, help="residual soft protons (not removed by the light curve): "
                   "x the default level (0.3 pn counts/s)")
    p.add_argument("--sp-index", type=finite_float, help=f"their counts-space spectrum E^-index (default {d.sp_index:g})")
    p.add_argument("--no-oot", action="store_true", default=False, help="no pn out-of-time events")
    p.add_argument("--sas-cleaned", action="store_true", default=False,
                   help="write SAS-cleaned lists (<cam>_exp1_clean_evts.fits: screened, FLAG==0, flares cut "
                        "and kept as GTI00n06 tables) as SAS users have them")
    return p


def config_from_args(args) -> SimConfig:
    """SimConfig defaults, then the preset, then the options given."""
    values = dict(PRESETS[args.preset])
    values.update({field_name: getattr(args, opt) for opt, field_name in _OPTION_FIELDS.items() if hasattr(args, opt)})
    return SimConfig(cameras=parse_cameras(args.cameras), sas_cleaned=args.sas_cleaned,
                     pn_oot=not args.no_oot, **values)


def preset_config(name: str, **overrides) -> SimConfig:
    """A SimConfig from a named preset, with fields overridden (for scripts and tests)."""
    return SimConfig(**{**PRESETS[name], **overrides})


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug, args.quiet)
    cfg = config_from_args(args)
    truth = simulate(cfg, args.workdir)
    print(json.dumps({"obsid": truth["obsid"], "files": truth["files"],
                      "truth": str(ObsPaths.of(cfg.obsid, args.workdir).truth)}))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
