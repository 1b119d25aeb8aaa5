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
import logging
import sys
from dataclasses import asdict, dataclass

import numpy as np
from astropy.time import Time

import xmmext.instrument as ins
import xmmext.xspec.library as xm
from xmmext.core.cli import run_main, setup_logging
from xmmext.core.fileio import atomic_path, write_fits, write_json
from xmmext.core.paths import ObsPaths
from xmmext.simulate.config import PRESETS, SimConfig, build_parser, config_from_args, preset_config, validate
from xmmext.simulate.events import (Events, beta_positions, ccd_area_arcmin2, ccd_uniform_positions, concat_events,
                                    detect, disk, flare_intervals, flare_profile_times, particle_energies,
                                    photon_component, psf_blur, soft_protons, uniform_times)
from xmmext.simulate.files import event_hdulist
from xmmext.simulate.sky import arc_positions, cluster_centre, draw_point_sources
from xmmext.simulate.source_spectra import (cluster_kt_at, cluster_photon_spectrum, cluster_shells, cool_core_kt,
                                            counts_rate, egrid, powerlaw_spectrum, thermal_model)

__all__ = ["SimConfig", "PRESETS", "COMPONENT_CODES", "simulate", "preset_config", "cluster_shells", "cool_core_kt",
           "main"]
log = logging.getLogger("xmmext.simulate.observation")

SKY_DISK_ARCMIN = 17.0
# Quiescent particle background, counts/s per arcmin^2 of CCD (0.2 keV - top of PI range)
_QPB_RATE = {"pn": 5.0e-3, "mos": 2.0e-3}
_FLARE_PEAK_PN = 35.0        # counts/s (full band) for a flare of amplitude 1 in pn
_MOS_FLARE_SCALE = 0.5
_SP_QUIESCENT_PN = 0.3       # counts/s
# per-event component labels (data/<OBSID>/truth_<cam>_components.npy, in file order)
COMPONENT_CODES = {"cluster": 1, "point_sources": 2, "cxb": 3, "foreground": 4, "qpb": 5,
                   "sp_quiescent": 6, "sp_flares": 7, "out_of_time": 8, "arc": 9}


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


@dataclass
class _Scene:
    """What every camera sees: times, flares, the cluster, point sources, the sky spectra."""
    model: str
    tstart: float
    tstop: float
    flares: list
    flare_amp: np.ndarray
    centre: tuple                  # cluster centre, sky X/Y
    radec: tuple                   # and RA/Dec
    shells: list
    unit_specs: list               # photon spectra of the shells for norm 1
    norm: float
    ps_xy: list
    ps_gamma: np.ndarray
    ps_spectra: list
    cxb_spec: np.ndarray           # over the sky disk
    fg_spec: np.ndarray


def _simulate(cfg: SimConfig, paths: ObsPaths) -> dict:
    xm.set_abundances(cfg.abund_table)
    model = thermal_model(cfg)
    if model == "apec":
        from xmmext.xspec.library import configure_xspec
        configure_xspec()
    seq = np.random.SeedSequence(cfg.seed)
    rng_global, *cam_seeds = [np.random.default_rng(s) for s in seq.spawn(1 + 3)]
    scene = _scene(cfg, model, rng_global)
    truth_counts: dict[str, dict[str, int]] = {}
    ps_truth = [{"ra": 0.0, "dec": 0.0, "counts": {}, "gamma": float(g)} for g in scene.ps_gamma]
    for k, (px, py) in enumerate(scene.ps_xy):
        r, d = ins.sky_to_radec(px, py, cfg.ra_pnt, cfg.dec_pnt)
        ps_truth[k]["ra"], ps_truth[k]["dec"] = float(r[0]), float(d[0])
    files = {}
    for cam_name in cfg.cameras:
        cam = ins.camera(cam_name)
        rng = cam_seeds[["mos1", "mos2", "pn"].index(cam_name)]
        active = cam.active_ccds(cfg.date_obs)
        comps, ps_events = _camera_components(cfg, scene, cam, rng, active)
        merged, labels, counts = _detected(cfg, cam, rng, active, comps, ps_events, ps_truth)
        truth_counts[cam_name] = counts
        files[cam_name] = str(_write_camera(paths, cfg, cam, scene, active, merged, labels))
        log.info("simulated %s: %d events (%s)", cam_name, len(merged["TIME"]),
                 ", ".join(f"{k} {v}" for k, v in counts.items()))
    truth = _truth(cfg, scene, ps_truth, truth_counts, files)
    write_json(paths.truth, truth)
    return truth


def _scene(cfg: SimConfig, model: str, rng_global) -> _Scene:
    """Draw what all cameras share (the global random stream, in a fixed order)."""
    tstart = float((Time(cfg.date_obs, scale="utc").tt
                    - Time(ins.MJDREF, format="mjd", scale="tt")).sec)
    tstart = float(np.floor(tstart))
    flares = flare_intervals(rng_global, cfg, tstart)
    flare_amp = rng_global.uniform(0.7, 2.0, len(flares))
    ccx, ccy = cluster_centre(cfg)
    c_ra, c_dec = ins.sky_to_radec(ccx, ccy, cfg.ra_pnt, cfg.dec_pnt)
    shells = cluster_shells(cfg)
    unit_specs = [cluster_photon_spectrum(cfg, model, sh["kT"]) * sh["norm_fraction"] for sh in shells]
    pn = ins.camera("pn")
    norm = cfg.norm if cfg.norm is not None else cfg.cluster_rate / counts_rate(sum(unit_specs), pn, cfg.filter)
    ps_xy, ps_counts, ps_gamma = draw_point_sources(cfg, rng_global, ccx, ccy)
    ps_spectra = []
    for g, cts in zip(ps_gamma, ps_counts):
        s = powerlaw_spectrum(g, cfg.nh)
        ps_spectra.append(s * cts / cfg.exposure / counts_rate(s, pn, cfg.filter))
    # sky background spectra per arcmin^2; sky photons are drawn on a disk that covers
    # every camera's field stop (their centres lie up to ~2' from the pointing); the
    # detector keeps what falls in its own FOV
    fov_arcmin2 = np.pi * SKY_DISK_ARCMIN ** 2
    cxb_spec = powerlaw_spectrum(1.46, cfg.nh) * (11.6 / 1.1818e7) * fov_arcmin2
    fg_spec = xm.evaluate("bremss", [0.2], egrid()) * 1.2e-5 * fov_arcmin2 if model != "apec" \
        else xm.evaluate("apec", [0.2, 1.0, 0.0], egrid()) * 4.0e-6 * fov_arcmin2
    return _Scene(model, tstart, tstart + cfg.exposure, flares, flare_amp, (ccx, ccy), (c_ra[0], c_dec[0]), shells,
                  unit_specs, norm, ps_xy, ps_gamma, ps_spectra, cxb_spec, fg_spec)


def _camera_components(cfg: SimConfig, s: _Scene, cam: ins.Camera, rng, active) -> tuple[dict, list]:
    """The photons and particles of every component on one camera (before detection)."""
    ccx, ccy = s.centre
    fov_px = SKY_DISK_ARCMIN * 60 / ins.SKY_PIX_ARCSEC
    times = lambda n: uniform_times(rng, n, s.tstart, s.tstop)   # noqa: E731
    comps: dict[str, Events] = {}
    comps["cluster"] = psf_blur(rng, cam, concat_events([photon_component(
        rng, cam, cfg, spec * s.norm, beta_positions(rng, cfg, ccx, ccy, sh["r_in"], sh["r_out"]), times)
        for sh, spec in zip(s.shells, s.unit_specs)]))
    if cfg.arc_fraction > 0:         # drawn only when asked: other simulations stay as they were
        arc_spec = cluster_photon_spectrum(cfg, s.model, cluster_kt_at(cfg, cfg.arc_radius_arcmin))
        comps["arc"] = psf_blur(rng, cam, photon_component(
            rng, cam, cfg, arc_spec * s.norm * cfg.arc_fraction, arc_positions(rng, cfg, ccx, ccy), times))
    ps_events = []
    for k, ((px, py), spec) in enumerate(zip(s.ps_xy, s.ps_spectra)):
        ev = psf_blur(rng, cam, photon_component(
            rng, cam, cfg, spec, lambda n, px=px, py=py: (np.full(n, px), np.full(n, py)), times))
        ev.source_index = k
        ps_events.append(ev)
    comps["cxb"] = photon_component(rng, cam, cfg, s.cxb_spec, lambda n: disk(rng, n, fov_px), times)
    comps["foreground"] = photon_component(rng, cam, cfg, s.fg_spec, lambda n: disk(rng, n, fov_px), times)
    # quiescent particle background (not vignetted, whole CCD area)
    kind = "pn" if cam.name == "pn" else "mos"
    n_qpb = rng.poisson(_QPB_RATE[kind] * ccd_area_arcmin2(cam, active) * cfg.exposure)
    qx, qy = ccd_uniform_positions(rng, cam, cfg, n_qpb, active)
    e_qpb, is_line, kept = particle_energies(rng, cam, n_qpb, _det_radius_arcmin(cam, cfg, qx, qy))
    comps["qpb"] = Events(times(int(kept.sum())), e_qpb[kept], qx[kept], qy[kept], particle=True,
                          redistribute=is_line[kept])
    # soft protons: counts-space spectrum E^-0.8 over the PI range, vignetted, FOV only
    scale = 1.0 if cam.name == "pn" else _MOS_FLARE_SCALE
    comps["sp_quiescent"] = soft_protons(
        rng, cam, cfg, times(rng.poisson(_SP_QUIESCENT_PN * cfg.sp_scale * scale * cfg.exposure)), fov_px)
    comps["sp_flares"] = soft_protons(
        rng, cam, cfg, flare_profile_times(rng, s.flares, s.flare_amp, _FLARE_PEAK_PN * scale * cfg.flare_scale),
        fov_px)
    return comps, ps_events


def _detected(cfg: SimConfig, cam: ins.Camera, rng, active, comps: dict, ps_events: list, ps_truth: list):
    """Every component through the detector; the merged columns in time order, each
    event's component label, the counts per component."""
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
        ps_truth[ev.source_index]["counts"][cam.name] = int(len(cols["TIME"]) - oot.sum())
        n_ps_total += len(cols["TIME"]) - int(oot.sum())
        columns.append(cols)
        labels.append(np.where(oot, COMPONENT_CODES["out_of_time"],
                               COMPONENT_CODES["point_sources"]).astype(np.uint8))
    counts["point_sources"] = int(n_ps_total)
    counts["out_of_time"] = n_oot
    merged = {k: np.concatenate([c[k] for c in columns]) for k in columns[0]}
    order = np.argsort(merged["TIME"], kind="stable")
    return {k: v[order] for k, v in merged.items()}, np.concatenate(labels)[order], counts


def _write_camera(paths: ObsPaths, cfg: SimConfig, cam: ins.Camera, s: _Scene, active, merged: dict, labels):
    """The camera's event list (raw, or SAS-cleaned) and its per-event component labels."""
    hdul = event_hdulist(cam, cfg, merged, s.tstart, s.tstop, active, *s.radec)
    dest = paths.event_dir / f"{cam.name}_evt.fits"
    write_fits(dest, hdul, checksum=False)   # no CHECKSUM: same seed -> identical bytes
    if cfg.sas_cleaned:                      # the list a SAS user has: screened, flares cut
        from xmmext.simulate.cleaned import cleaned_name, write_sas_cleaned
        clean = paths.event_dir / cleaned_name(cam.name)
        keep = write_sas_cleaned(dest, clean, cam.name, cam.standard_expression, s.flares)
        dest.unlink()
        dest, labels = clean, labels[keep]
    with atomic_path(paths.data / f"truth_{cam.name}_components.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, labels)
    return dest


def _truth(cfg: SimConfig, s: _Scene, ps_truth: list, truth_counts: dict, files: dict) -> dict:
    """truth.json: every input and what was drawn."""
    model = s.model
    return {
        "obsid": cfg.obsid, "seed": cfg.seed, "exposure_s": cfg.exposure,
        "tstart": s.tstart, "tstop": s.tstop, "date_obs": cfg.date_obs,
        "pointing": {"ra": cfg.ra_pnt, "dec": cfg.dec_pnt, "pa": cfg.pa_pnt},
        "filter": cfg.filter,
        "cluster": {"ra": float(s.radec[0]), "dec": float(s.radec[1]), "x": float(s.centre[0]),
                    "y": float(s.centre[1]), "kT": cfg.kt, "abund": cfg.abund if model == "apec" else None,
                    "redshift": cfg.redshift, "nH": cfg.nh, "norm": float(s.norm),
                    "model": f"tbabs*{model}", "abund_table": cfg.abund_table,
                    "core_radius_arcmin": cfg.core_radius_arcmin, "beta": cfg.beta,
                    "r_max_arcmin": cfg.r_max_arcmin,
                    "kT_profile": None if cfg.kt_centre is None else {
                        "kT_centre": cfg.kt_centre, "kT_outer": cfg.kt, "r_cool_arcmin": cfg.cool_radius_arcmin,
                        "shells": s.shells},
                    "arc": None if cfg.arc_fraction <= 0 else {
                        "fraction_of_norm": cfg.arc_fraction, "radius_arcmin": cfg.arc_radius_arcmin,
                        "width_arcsec": cfg.arc_width_arcsec, "length_deg": cfg.arc_length_deg,
                        "pa_deg": cfg.arc_pa_deg},
                    "note": {"apec": None,
                             "zbremss": "AtomDB absent: zbremss continuum at the redshift (no lines, no abundance)",
                             "bremss": "bremss continuum (no lines, no abundance, redshift not applied)"}[model]},
        "flares": s.flares, "flare_amplitudes": [float(a) for a in s.flare_amp],
        "point_sources": ps_truth,
        "counts": truth_counts,
        "component_codes": COMPONENT_CODES,
        "active_ccds": {c: ins.camera(c).active_ccds(cfg.date_obs) for c in cfg.cameras},
        "config": asdict(cfg),
        "files": files,
    }


def _det_radius_arcmin(cam: ins.Camera, cfg: SimConfig, x, y) -> np.ndarray:
    """Distance from the detector's centre (the field stop's centre), arcmin."""
    detx, dety = ins.sky_to_det(cam, x, y, cfg.pa_pnt)
    return np.hypot(detx - cam.fov_centre_det[0], dety - cam.fov_centre_det[1]) / 60.0


def main(argv=None) -> int:
    """``python -m xmmext.simulate.observation``: simulate, print where the files are."""
    args = build_parser().parse_args(argv)
    setup_logging(args.debug, args.quiet)
    cfg = config_from_args(args)
    truth = simulate(cfg, args.workdir)
    print(json.dumps({"obsid": truth["obsid"], "files": truth["files"],
                      "truth": str(ObsPaths.of(cfg.obsid, args.workdir).truth)}))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
