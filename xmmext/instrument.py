"""EPIC instrument model for MOS1, MOS2 and pn, from public facts.

What is modelled, and where the numbers come from
-------------------------------------------------
* Sky pixels (X/Y event columns): 0.05 arcsec, reference pixel 25921, legal range
  1..51840, RA---TAN/DEC--TAN centred on the pointing (XMM Users Handbook (UHB) and
  the REFXCRPX/REFXCDLT keywords SAS writes; checked against the real PPS products in
  ../shared/data).
* CCDs: MOS = 7 front-illuminated CCDs of 600x600 pixels of 1.1"; pn = 12 back-
  illuminated CCDs of 64x200 pixels of 4.1" in 4 quadrants (UHB sec. 3.3). The MOS
  layout (CCD centres, RAWX directions), the DET -> sky angles (with SAS's mirror), the
  DET origins and the field stops were measured on real SAS event lists
  (tools/derive_geometry.py); pn, for which no events were shared, is two rows of six
  with its angle and centre from its eexpmap map. This layout is what the SIMULATOR
  uses; the analysis learns every observation's footprint from its own events
  (xmmext/geometry.py). MOS1 CCD6 (lost 2005-03-09) and CCD3 (lost 2012-12-11) are off
  for observations after those dates (micrometeoroid events, UHB).
* FOV: the field stop, a circle on the detector (MOS: 14.24-14.28' measured on events;
  pn 15.0' fitted to its exposure-map footprint); CCD area outside it is the shielded "corner" area that sees only the
  particle background (FLAG bit 0x10000 in SAS lists).
* On-axis effective area (mirror x filter x quantum efficiency), Medium filter: a
  table read off the UHB effective-area curves; its normalisation and shape were
  checked against the real SAS ARFs of ../shared/data (point source 2' off-axis,
  40" radius) divided by this model's encircled energy and vignetting. Thin/Thick
  filters scale the soft band by ``exp(k/E^2)`` (UHB filter transmission curves,
  approximate).
* Vignetting: radial profiles per camera at 1.25 and 6 keV and the optical axes, fitted
  to SAS eexpmap maps of a real observation (tools/derive_vignetting.py); the MOS RGA
  azimuthal pattern (2-3%) is not modelled.
* Energy resolution: Gaussian with FWHM^2 = w0^2 + k E, fitted to the UHB values
  (pn: 80 eV at 1 keV, 150 eV at 6.4 keV; MOS: 70 eV and 130 eV).
* PSF: King profile (1 + r^2/rc^2)^-alpha with alpha = 1.5 and rc set by the on-axis
  half-energy width (pn 16.6", MOS 13.8"; UHB). No energy/off-axis dependence.

Simplifications (said plainly): no attitude jitter, no MOS RGA azimuthal vignetting,
no pile-up or out-of-time events.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.wcs import WCS

__all__ = ["SKY_PIX_ARCSEC", "SKY_REF_PIX", "FOV_RADIUS_ARCMIN", "MJDREF", "OUT_OF_FOV_FLAG", "XMMEA_EM_MASK",
           "XMMEA_EP_MASK", "PN_OOT_FRACTION", "RAW_SHAPE", "OPTICAL_AXIS_OFFSET", "VIGNETTING", "RESP_ELO",
           "RESP_EHI", "CHANNEL_EV", "CCD", "Camera", "filter_ratio", "soft_proton_vignetting", "vignetting",
           "pi_spectrum", "CAMERAS", "INSTRUME_TO_CAMERA", "camera", "sky_wcs", "radec_to_sky", "sky_to_radec",
           "det_to_sky", "sky_to_det", "off_axis_arcmin"]

# --- sky frame ---------------------------------------------------------------------
SKY_PIX_ARCSEC = 0.05
SKY_REF_PIX = 25921.0
SKY_TLMIN, SKY_TLMAX = 1, 51840
FOV_RADIUS_ARCMIN = 15.0
MJDREF = 50814.0                 # 1998-01-01T00:00:00 TT, the XMM time origin
OUT_OF_FOV_FLAG = 0x10000
XMMEA_EM_MASK = 0x766BA000       # DESIGN.md; matches SAS DSVAL 'b000x00xx00x0x000x0x...'
XMMEA_EP_MASK = 0x0CFA0000       # from SAS SLCTEXPR in the real pn spectrum header

# pn out-of-time events: photons arriving during the CCD readout, recorded at a random
# RAWY of their column, as a share of the in-time events per pn mode (SUBMODE; UHB table 3).
PN_OOT_FRACTION = {"PrimeFullWindow": 0.063, "PrimeFullWindowExtended": 0.023, "PrimeLargeWindow": 0.0016,
                   "PrimeSmallWindow": 0.011}

# RAW pixel grid of one CCD (RAWX, RAWY), UHB sec. 3.3.
RAW_SHAPE = {"mos1": (600, 600), "mos2": (600, 600), "pn": (64, 200)}
# Vignetting centre of each telescope: offset in arcsec from the pointing (RA_PNT/DEC_PNT)
# in the spacecraft frame, i.e. the sky X/Y offset turned back by PA_PNT. Fitted, with the
# radial profiles below, to the SAS eexpmap maps of the real observation 0201903501 by
# tools/derive_vignetting.py (eexpmap's own XCEN/YCEN keywords are rounded and leave 6-8%
# azimuthal residuals for MOS; this centre leaves 2-3%, the MOS RGA pattern). The axes
# are fixed on the spacecraft, so the offsets hold for every roll angle.
OPTICAL_AXIS_OFFSET = {"mos1": (-75.6, 141.6), "mos2": (-20.4, 114.8), "pn": (-52.6, 119.1)}
# Radial vignetting (1 + (theta/theta0)^2)^-k at two energies (keV, theta0 arcmin, k), from
# the same fit of the 0.5-2 and 2-10 keV eexpmap maps (taken at their mid energies, 1.25
# and 6 keV). Between them theta0 and k are interpolated linearly in energy; below 1.25 keV
# the soft values hold; above 6 keV the trend is continued up to 10 keV and held there.
VIGNETTING = {"mos1": ((1.25, 13.597, 1.4445), (6.0, 13.079, 1.6659)),
              "mos2": ((1.25, 12.640, 1.2895), (6.0, 12.498, 1.5557)),
              "pn": ((1.25, 9.277, 0.8568), (6.0, 9.347, 1.0509))}

# --- energy grids of the responses ------------------------------------------------
# Same grid as the SAS pn RMF in ../shared/data (0.05-16 keV, 2067 rows is SAS's;
# we use uniform 10 eV rows which is finer than the resolution everywhere).
RESP_ELO = np.round(np.arange(0.05, 15.0, 0.01), 5)
RESP_EHI = np.round(RESP_ELO + 0.01, 5)
CHANNEL_EV = 5.0                 # spectralbinsize=5: one channel = 5 eV of PI


@dataclass(frozen=True)
class CCD:
    """One CCD: number, centre in the detector (DET) frame (arcsec), pixel grid, and the
    direction of its RAWX axis in DET (deg; RAWY is 90 deg further, as in SAS)."""
    ccdnr: int
    cx: float
    cy: float
    nx: int
    ny: int
    pix: float
    rawx_deg: float = 0.0

    def to_local(self, detx_as, dety_as):
        """DET (arcsec) -> offsets along RAWX and RAWY from the CCD's corner (arcsec)."""
        a = np.deg2rad(self.rawx_deg)
        du, dv = np.asarray(detx_as, float) - self.cx, np.asarray(dety_as, float) - self.cy
        return du * np.cos(a) + dv * np.sin(a) + self.half_w, -du * np.sin(a) + dv * np.cos(a) + self.half_h

    def to_det(self, u, v):
        """Offsets along RAWX/RAWY from the CCD's corner (arcsec) -> DET (arcsec)."""
        a = np.deg2rad(self.rawx_deg)
        lu, lv = np.asarray(u, float) - self.half_w, np.asarray(v, float) - self.half_h
        return self.cx + lu * np.cos(a) - lv * np.sin(a), self.cy + lu * np.sin(a) + lv * np.cos(a)

    @property
    def half_w(self) -> float:
        return self.nx * self.pix / 2.0

    @property
    def half_h(self) -> float:
        return self.ny * self.pix / 2.0


@dataclass(frozen=True)
class Camera:
    """Static properties of one EPIC camera."""
    name: str
    instrume: str
    pixel_arcsec: float
    ccds: tuple[CCD, ...]
    max_pi: int                       # PI range 0..max_pi (eV)
    det_angle_deg: float              # DET -> sky: rotation by PA_PNT + this, after a mirror
    det_origin_sc: tuple[float, float]  # DET origin: offset (arcsec) from the pointing, spacecraft frame
    fov_centre_det: tuple[float, float]  # field-stop circle: centre in DET (arcsec) ...
    fov_radius_arcmin: float            # ... and radius
    area_table: tuple[tuple[float, float], ...]
    fwhm_w0_ev: float
    fwhm_k_ev2_per_kev: float
    king_rc_arcsec: float
    king_alpha: float = 1.5
    flare_expression: str = ""
    standard_expression: str = ""
    flag_mask: int = 0
    dead_ccds_after: tuple[tuple[int, str], ...] = field(default_factory=tuple)

    @property
    def n_channels(self) -> int:
        return int(round((self.max_pi + 1) / CHANNEL_EV))

    def ccd(self, ccdnr: int) -> CCD:
        for c in self.ccds:
            if c.ccdnr == ccdnr:
                return c
        raise KeyError(ccdnr)

    def active_ccds(self, date_obs: str | None = None) -> list[int]:
        """CCD numbers that take data on ``date_obs`` (ISO date); all if None."""
        dead = {n for n, since in self.dead_ccds_after if date_obs and date_obs[:10] >= since}
        return [c.ccdnr for c in self.ccds if c.ccdnr not in dead]

    # -- detector geometry -----------------------------------------------------
    def locate(self, detx_as: np.ndarray, dety_as: np.ndarray, active: list[int] | None = None):
        """CCD number (0 = none/gap), RAWX, RAWY (1-based) for detector positions in arcsec."""
        detx_as = np.asarray(detx_as, float)
        dety_as = np.asarray(dety_as, float)
        ccdnr = np.zeros(detx_as.shape, np.int16)
        rawx = np.zeros(detx_as.shape, np.int16)
        rawy = np.zeros(detx_as.shape, np.int16)
        for c in self.ccds:
            if active is not None and c.ccdnr not in active:
                continue
            u, v = c.to_local(detx_as, dety_as)
            on = (u >= 0) & (u < 2 * c.half_w) & (v >= 0) & (v < 2 * c.half_h)
            ccdnr[on] = c.ccdnr
            rawx[on] = (u[on] / c.pix).astype(np.int16) + 1
            rawy[on] = (v[on] / c.pix).astype(np.int16) + 1
        return ccdnr, rawx, rawy

    def in_fov(self, detx_as, dety_as) -> np.ndarray:
        """Inside the field stop (a circle on the detector)."""
        r = np.hypot(np.asarray(detx_as, float) - self.fov_centre_det[0],
                     np.asarray(dety_as, float) - self.fov_centre_det[1]) / 60.0
        return r <= self.fov_radius_arcmin

    def bounding_radius_arcsec(self) -> float:
        return max(np.hypot(abs(c.cx) + c.half_w, abs(c.cy) + c.half_h) for c in self.ccds)

    # -- response ---------------------------------------------------------------
    def on_axis_area(self, energy_kev, filt: str = "Medium") -> np.ndarray:
        """On-axis effective area (cm^2) at ``energy_kev`` for the given filter."""
        e = np.asarray(energy_kev, float)
        te, ta = np.array(self.area_table).T
        logarea = np.interp(e, te, np.log(ta), left=-np.inf, right=-np.inf)
        area = np.exp(logarea)
        return area * filter_ratio(e, filt)

    def fwhm_kev(self, energy_kev) -> np.ndarray:
        e = np.asarray(energy_kev, float)
        return np.sqrt(self.fwhm_w0_ev ** 2 + self.fwhm_k_ev2_per_kev * e) / 1000.0

    def sigma_kev(self, energy_kev) -> np.ndarray:
        return self.fwhm_kev(energy_kev) / (2.0 * np.sqrt(2.0 * np.log(2.0)))

    def encircled_energy(self, radius_arcsec) -> np.ndarray:
        """Fraction of a point source's photons within ``radius_arcsec`` (King PSF)."""
        r = np.asarray(radius_arcsec, float)
        return 1.0 - (1.0 + (r / self.king_rc_arcsec) ** 2) ** (1.0 - self.king_alpha)

    def sample_psf(self, rng: np.random.Generator, n: int, rmax_arcsec: float = 600.0):
        """Random offsets (dx, dy) in arcsec drawn from the King PSF, truncated at rmax."""
        umax = self.encircled_energy(rmax_arcsec)
        u = rng.uniform(0.0, umax, n)
        r = self.king_rc_arcsec * np.sqrt((1.0 - u) ** (1.0 / (1.0 - self.king_alpha)) - 1.0)
        phi = rng.uniform(0.0, 2 * np.pi, n)
        return r * np.cos(phi), r * np.sin(phi)


def filter_ratio(energy_kev, filt: str) -> np.ndarray:
    """Transmission of ``filt`` relative to the Medium filter (soft band only)."""
    k = {"medium": 0.0, "thin": 0.015, "thin1": 0.015, "thin2": 0.015, "thick": -0.08}
    key = (filt or "Medium").strip().lower()
    if key not in k:
        raise ValueError(f"unknown filter {filt!r}; use Thin, Medium or Thick")
    e = np.maximum(np.asarray(energy_kev, float), 0.05)
    return np.exp(k[key] / e ** 2)


def soft_proton_vignetting(theta_arcmin) -> np.ndarray:
    """Relative soft-proton intensity vs off-axis angle. Soft protons reach the focal plane
    through the mirrors but scatter differently, so they fall off less steeply than X-rays
    (Kuntz & Snowden 2008): modelled as 1 / (1 + (theta / 20')^2), 0.64 at the FOV edge where
    0.5-2 keV X-rays are near 0.45. An assumption of the modelled background and the
    simulator alike, not measured here (no SP-flare data in ../shared)."""
    return 1.0 / (1.0 + (np.asarray(theta_arcmin, float) / 20.0) ** 2)


def vignetting(camera: str, theta_arcmin, energy_kev) -> np.ndarray:
    """Fraction of the on-axis area left at off-axis angle ``theta`` (arcmin) for a camera."""
    (e1, t1, k1), (e2, t2, k2) = VIGNETTING[CAMERAS[camera].name if camera in CAMERAS else camera]
    th = np.asarray(theta_arcmin, float)
    w = (np.clip(np.asarray(energy_kev, float), e1, 10.0) - e1) / (e2 - e1)
    theta0 = t1 + w * (t2 - t1)
    k = k1 + w * (k2 - k1)
    return (1.0 + (th / theta0) ** 2) ** (-k)


def pi_spectrum(pi: np.ndarray, cam) -> np.ndarray:
    """Counts per spectral channel (5 eV of PI each) of a camera (:class:`Camera`)."""
    ch = np.asarray(pi, np.int64) // int(CHANNEL_EV)
    ch = ch[(ch >= 0) & (ch < cam.n_channels)]
    return np.bincount(ch, minlength=cam.n_channels).astype(np.int32)



# --- the three cameras --------------------------------------------------------------
# MOS CCD centres in DET (arcsec) and RAWX directions, from the RAW->DET maps of the
# real 0201903501 event lists (tools/derive_geometry.py): the central CCD 1 and six
# around it, turned so that each RAWY runs away from the centre, as on XMM.
_MOS_LAYOUT = {
    "mos1": {1: (0.0, 0.0, 0), 2: (325.4, -677.9, 90), 3: (663.3, -15.3, 90), 4: (328.6, 651.3, 90),
             5: (-320.6, 655.2, 270), 6: (-659.0, -4.9, 270), 7: (-326.3, -673.1, 270)},
    "mos2": {1: (0.0, 0.0, 0), 2: (331.9, -670.6, 90), 3: (668.6, -11.7, 90), 4: (330.6, 657.0, 90),
             5: (-329.2, 658.6, 270), 6: (-662.1, -3.3, 270), 7: (-335.1, -671.5, 270)},
}


def _mos_ccds(cam: str) -> tuple[CCD, ...]:
    return tuple(CCD(n, x, y, 600, 600, 1.1, a) for n, (x, y, a) in _MOS_LAYOUT[cam].items())


def _pn_ccds() -> tuple[CCD, ...]:
    """Two rows of six 64x200 CCDs about the DET origin (no pn events were available to
    measure them; with the DET->sky angle below the pointing falls on CCD 4, as on XMM)."""
    w, h, gap = 64 * 4.1, 200 * 4.1, 4.0
    ccds = []
    for k in range(6):              # upper row: CCDs 1..6 left to right
        ccds.append(CCD(k + 1, (k - 2.5) * (w + gap), (h + gap) / 2, 64, 200, 4.1))
    for k in range(6):              # lower row: CCDs 7..12 right to left
        ccds.append(CCD(k + 7, (2.5 - k) * (w + gap), -(h + gap) / 2, 64, 200, 4.1))
    return tuple(ccds)


_PN_AREA = ((0.15, 15), (0.2, 40), (0.25, 90), (0.3, 190), (0.35, 330), (0.4, 520),
            (0.5, 875), (0.6, 1000), (0.8, 1130), (1.0, 1250), (1.2, 1320), (1.5, 1370),
            (1.8, 1360), (2.0, 1310), (2.2, 1210), (2.3, 1010), (2.5, 960), (3.0, 900),
            (4.0, 910), (5.0, 925), (6.0, 860), (7.0, 720), (8.0, 560), (9.0, 385),
            (10.0, 250), (11.0, 150), (12.0, 95), (13.0, 60), (15.0, 25))
# MOS, Medium filter. 0.3-1.4 keV from SAS arfgen ARFs (tools/derive_mos_area.py: NGC 7793
# ULX-4 MOS1+MOS2, shape normalised at 1.5 keV), with the oxygen K edge at 0.535 keV; the
# earlier table had no edge and 1.2-1.7x too much area at 0.55-0.8 keV, which pushed kT up
# on real data.
_MOS_AREA = ((0.15, 1), (0.2, 3), (0.25, 8), (0.30, 36), (0.35, 58), (0.40, 84), (0.45, 116), (0.50, 157),
             (0.530, 175), (0.537, 78), (0.55, 95), (0.60, 125), (0.65, 153), (0.70, 185), (0.75, 213),
             (0.80, 241), (0.85, 270), (0.90, 296), (0.95, 323), (1.00, 347), (1.05, 371), (1.10, 393),
             (1.15, 413), (1.20, 433), (1.25, 451), (1.30, 469), (1.35, 487), (1.40, 502), (1.5, 528), (1.7, 540), (1.838, 520),
             (1.845, 430), (2.0, 410), (2.2, 395), (2.3, 350), (2.5, 345), (3.0, 352),
             (4.0, 340), (5.0, 314), (6.0, 240), (7.0, 143), (8.0, 85), (9.0, 43),
             (10.0, 22), (11.0, 12), (12.0, 6), (15.0, 1))

_MOS_COMMON = dict(pixel_arcsec=1.1, max_pi=11999, area_table=_MOS_AREA,
                   fwhm_w0_ev=51.7, fwhm_k_ev2_per_kev=2222.0, king_rc_arcsec=4.0,
                   flare_expression="#XMMEA_EM && (PI>10000) && (PATTERN==0)",
                   standard_expression="#XMMEA_EM && (PATTERN<=12) && (FLAG==0)",
                   flag_mask=XMMEA_EM_MASK)

CAMERAS: dict[str, Camera] = {
    # DET->sky angles, DET origins and field stops measured on 0201903501 (tools/derive_geometry.py);
    # pn: angle, array centre and field stop fitted to its eexpmap footprint (90.8% agreement:
    # the real array is ~40" narrower at its two outer long edges, bad columns not simulated).
    "mos1": Camera(name="mos1", instrume="EMOS1", ccds=_mos_ccds("mos1"), det_angle_deg=-180.0,
                   det_origin_sc=(-70.5, 70.2), fov_centre_det=(5.2, -10.7), fov_radius_arcmin=14.28,
                   dead_ccds_after=((6, "2005-03-09"), (3, "2012-12-11")), **_MOS_COMMON),
    "mos2": Camera(name="mos2", instrume="EMOS2", ccds=_mos_ccds("mos2"), det_angle_deg=-90.29,
                   det_origin_sc=(-81.3, 61.8), fov_centre_det=(-3.0, -14.5), fov_radius_arcmin=14.24,
                   **_MOS_COMMON),
    "pn": Camera(name="pn", instrume="EPN", pixel_arcsec=4.1, ccds=_pn_ccds(), max_pi=20479,
                 det_angle_deg=90.26, det_origin_sc=(-128.8, -57.8), fov_centre_det=(0.0, 0.0),
                 fov_radius_arcmin=15.0, area_table=_PN_AREA, fwhm_w0_ev=58.5,
                 fwhm_k_ev2_per_kev=2981.0, king_rc_arcsec=4.8,
                 flare_expression="#XMMEA_EP && (PI>10000 && PI<12000) && (PATTERN==0)",
                 standard_expression="#XMMEA_EP && (PATTERN<=4) && (FLAG==0)",
                 flag_mask=XMMEA_EP_MASK),
}
INSTRUME_TO_CAMERA = {c.instrume: n for n, c in CAMERAS.items()}


def camera(name: str) -> Camera:
    """The Camera for ``mos1``, ``mos2`` or ``pn`` (also accepts EMOS1/EMOS2/EPN)."""
    key = INSTRUME_TO_CAMERA.get(name.upper(), name.lower())
    if key not in CAMERAS:
        raise KeyError(f"unknown camera {name!r}")
    return CAMERAS[key]


# --- coordinates -----------------------------------------------------------------
def sky_wcs(ra_pnt: float, dec_pnt: float) -> WCS:
    """The TAN WCS of the sky X/Y columns (FITS 1-based pixels, as in the event file)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra_pnt, dec_pnt]
    w.wcs.crpix = [SKY_REF_PIX, SKY_REF_PIX]
    w.wcs.cdelt = [-SKY_PIX_ARCSEC / 3600.0, SKY_PIX_ARCSEC / 3600.0]
    w.wcs.radesys = "FK5"
    w.wcs.equinox = 2000.0
    return w


def radec_to_sky(ra, dec, ra_pnt: float, dec_pnt: float):
    """RA/Dec (deg) -> sky X/Y (FITS pixel convention of the event columns)."""
    x, y = sky_wcs(ra_pnt, dec_pnt).wcs_world2pix(np.atleast_1d(ra), np.atleast_1d(dec), 1)
    return x, y


def sky_to_radec(x, y, ra_pnt: float, dec_pnt: float):
    ra, dec = sky_wcs(ra_pnt, dec_pnt).wcs_pix2world(np.atleast_1d(x), np.atleast_1d(y), 1)
    return ra, dec


def _rot(a_deg: float) -> np.ndarray:
    a = np.deg2rad(a_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


_MIRROR = np.diag([1.0, -1.0])     # DET -> sky X/Y is a rotation after a mirror (SAS: det = -1)


def det_to_sky(cam: Camera, detx_as, dety_as, pa_deg: float):
    """DET (arcsec) -> sky X/Y pixels: the DET origin sits at the camera's offset from the
    pointing (spacecraft frame, turned by PA), DET axes turned by PA + the camera's angle."""
    m = _rot(pa_deg + cam.det_angle_deg) @ _MIRROR
    o = _rot(pa_deg) @ np.asarray(cam.det_origin_sc, float)
    dx, dy = np.asarray(detx_as, float), np.asarray(dety_as, float)
    sx = o[0] + m[0, 0] * dx + m[0, 1] * dy
    sy = o[1] + m[1, 0] * dx + m[1, 1] * dy
    return sx / SKY_PIX_ARCSEC + SKY_REF_PIX, sy / SKY_PIX_ARCSEC + SKY_REF_PIX


def sky_to_det(cam: Camera, x, y, pa_deg: float):
    """Sky X/Y pixels -> DET (arcsec); the inverse of :func:`det_to_sky`."""
    m = np.linalg.inv(_rot(pa_deg + cam.det_angle_deg) @ _MIRROR)
    o = _rot(pa_deg) @ np.asarray(cam.det_origin_sc, float)
    sx = (np.asarray(x, float) - SKY_REF_PIX) * SKY_PIX_ARCSEC - o[0]
    sy = (np.asarray(y, float) - SKY_REF_PIX) * SKY_PIX_ARCSEC - o[1]
    return m[0, 0] * sx + m[0, 1] * sy, m[1, 0] * sx + m[1, 1] * sy


def off_axis_arcmin(x, y) -> np.ndarray:
    """Angle (arcmin) of sky pixels from the pointing position (the optical axes are
    elsewhere: see geometry.optical_axis)."""
    return np.hypot(np.asarray(x, float) - SKY_REF_PIX, np.asarray(y, float) - SKY_REF_PIX) \
        * SKY_PIX_ARCSEC / 60.0
