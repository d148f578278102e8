"""Drawing blocks of the SYNTHETIC cohort (:mod:`hdcnn.data.synth`): power-law breast texture,
the breast outline of a view, where a lesion may sit, and the intensity profiles of masses and
calcification clusters. No file I/O and no cohort logic: :func:`hdcnn.data.synth.render_view`
composes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from hdcnn.terms import View

# --------------------------------------------------------------------------- texture


def power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian random field with power spectrum ``1 / f**beta`` (zero mean, unit std).

    Args:
        shape: ``(H, W)``.
        beta: spectral exponent (~3 for breast parenchyma, 0 = white noise).
        rng: random source.

    Returns:
        float32 ``(H, W)``.
    """
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amplitude = f ** (-beta / 2.0)
    amplitude[0, 0] = 0.0
    spectrum = amplitude * (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape))
    field_ = np.fft.irfft2(spectrum, s=(h, w))
    field_ -= field_.mean()
    std = field_.std()
    return (field_ / std if std > 0 else field_).astype(np.float32)


# --------------------------------------------------------------------------- one view


@dataclass(frozen=True)
class Breast:
    """Breast outline in the canonical frame (chest wall at x = 0)."""

    cy: float  # vertical centre of the base (px)
    a: float  # depth from the chest wall to the nipple (px)
    b: float  # vertical half-extent at the chest wall (px)
    px: float  # exponent of the x term: 2 = ellipse, smaller = blunter
    pect_w: float  # pectoral triangle width at the top edge (0 on CC)
    pect_h: float  # pectoral triangle height along the chest wall (0 on CC)

    def radius(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Normalised radius: < 1 inside the breast."""
        return (np.clip(xx, 0, None) / self.a) ** self.px + ((yy - self.cy) / self.b) ** 2

    def pectoral(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Signed distance-like value, > 0 inside the pectoral triangle."""
        if self.pect_w <= 0:
            return np.full(xx.shape, -1.0, dtype=np.float32)
        return 1.0 - xx / self.pect_w - yy / self.pect_h


def breast_for(view: str, h: int, w: int, rng: np.random.Generator) -> Breast:
    if view == View.MLO:
        return Breast(
            cy=h * rng.uniform(0.40, 0.48),
            a=w * rng.uniform(0.62, 0.78),
            b=h * rng.uniform(0.50, 0.58),
            px=rng.uniform(1.6, 2.0),
            pect_w=w * rng.uniform(0.25, 0.38),
            pect_h=h * rng.uniform(0.45, 0.65),
        )
    return Breast(
        cy=h * rng.uniform(0.47, 0.53),
        a=w * rng.uniform(0.62, 0.82),
        b=h * rng.uniform(0.36, 0.44),
        px=rng.uniform(1.7, 2.2),
        pect_w=0.0,
        pect_h=0.0,
    )


def lesion_centre(
    breast: Breast, depth: float, rng: np.random.Generator, radius_px: float
) -> tuple[float, float]:
    """A centre at ``depth`` (fraction of breast depth) inside the breast, off the pectoral."""
    x = depth * breast.a
    half = breast.b * (1.0 - depth**breast.px) ** 0.5  # vertical half-extent at this depth
    for _ in range(50):
        y = breast.cy + rng.uniform(-0.6, 0.6) * max(half - radius_px, 1.0)
        # the lesion's corner nearest the pectoral muscle must stay clear of it
        if breast.pectoral(np.array(x - 1.5 * radius_px), np.array(y - 1.5 * radius_px)) < -0.1:
            return x, float(y)
    return x, breast.cy + 0.3 * half  # low on the breast: below any pectoral triangle


def mass_intensity(
    xx: np.ndarray,
    yy: np.ndarray,
    centre: tuple[float, float],
    radius: float,
    malignant: bool,
    shape_rng: np.random.Generator,
    view_rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Additive intensity (0..1) of a mass: circumscribed oval or irregular spiculated.

    Returns:
        ``(intensity, body)``: float32 ``(H, W)`` maps; ``body`` is the mass without its
        spicules (the ground-truth box bounds the body, as CBIS-DDSM outlines do).
    """
    cx, cy = centre
    dx, dy = xx - cx, yy - cy
    theta = np.arctan2(dy, dx)
    rot = view_rng.uniform(0, np.pi)
    if malignant:
        boundary = np.ones_like(theta)
        for k in range(2, 8):
            amp = shape_rng.uniform(0.03, 0.12)
            boundary = boundary + amp * np.cos(k * (theta - rot) + shape_rng.uniform(0, 2 * np.pi))
        rho = np.hypot(dx, dy) / (radius * boundary)
        edge = 0.25  # ill-defined margin
    else:
        ratio = shape_rng.uniform(0.7, 1.0)
        c, s = np.cos(rot), np.sin(rot)
        u = (dx * c + dy * s) / radius
        v = (-dx * s + dy * c) / (radius * ratio)
        rho = np.hypot(u, v)
        edge = 0.08  # circumscribed
    body = np.clip((1.0 - rho) / edge, 0.0, 1.0)
    body = body * (0.7 + 0.3 * np.clip(1.0 - rho, 0, 1))  # slightly brighter centre
    if not malignant:
        body = body.astype(np.float32)
        return body, body

    spicules = np.zeros(xx.shape, dtype=np.float32)
    n_spic = int(shape_rng.integers(8, 16))
    for _ in range(n_spic):
        ang = shape_rng.uniform(0, 2 * np.pi) + rot
        length = radius * shape_rng.uniform(1.5, 2.4)
        x2, y2 = cx + length * np.cos(ang), cy + length * np.sin(ang)
        p1 = (round(cx * 16), round(cy * 16))
        p2 = (round(x2 * 16), round(y2 * 16))
        cv2.line(spicules, p1, p2, 0.55, thickness=1, lineType=cv2.LINE_AA, shift=4)
    spicules = cv2.GaussianBlur(spicules, (0, 0), 0.6)
    body = body.astype(np.float32)
    return np.maximum(body, spicules).astype(np.float32), body


def calc_intensity(
    shape: tuple[int, int],
    centre: tuple[float, float],
    radius: float,
    malignant: bool,
    shape_rng: np.random.Generator,
    px_per_mm: float,
) -> np.ndarray:
    """Additive intensity of a calcification cluster (tiny bright Gaussian specks)."""
    h, w = shape
    out = np.zeros(shape, dtype=np.float32)
    n = int(shape_rng.integers(8, 20)) if malignant else int(shape_rng.integers(4, 8))
    sigma_mm = (0.25, 0.45) if malignant else (0.5, 0.8)
    for _ in range(n):
        r = radius * np.sqrt(shape_rng.uniform(0, 1))
        a = shape_rng.uniform(0, 2 * np.pi)
        sx, sy = centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)
        sigma = max(0.6, shape_rng.uniform(*sigma_mm) * px_per_mm)
        half = math.ceil(3 * sigma) + 1
        x0, x1 = max(0, math.floor(sx) - half), min(w, math.floor(sx) + half + 1)
        y0, y1 = max(0, math.floor(sy) - half), min(h, math.floor(sy) + half + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        gy, gx = np.mgrid[y0:y1, x0:x1]
        blob = np.exp(-((gx - sx) ** 2 + (gy - sy) ** 2) / (2 * sigma * sigma))
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], blob.astype(np.float32))
    return out
