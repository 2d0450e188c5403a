"""Phantom particles (array kernels, numpy/scipy only): shape, thickness and domains.

A particle is a superellipsoid with an irregular outline (random low-order harmonics of
its radius) and a gently modulated thickness, lying on vacuum. Its projected thickness
t(y, x) is computed on a fine *master* grid. Domains are smooth random regions: one
Gaussian-smoothed random field per bulk domain type plus a bias (calibrated so the
N_V-weighted fractions match the condition), soft-maxed with a small temperature (smooth
boundaries ≈ 0.1 × domain size wide), and a patchy surface shell of the surface type.
The result is, for every domain type and element, a projected density map
N_j^t(y, x) = w_t(y, x)·t(y, x)·n_j^t [m⁻²] — the only thing the forward model needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Softmax temperature of the domain fields (unit-variance fields): small → sharp boundaries.
DOMAIN_TEMPERATURE = 0.12


@dataclass
class Phantom:
    """Master-grid maps of one particle.

    Attributes
    ----------
    y, x : ndarray
        Master pixel centres [m] (particle centred at 0).
    thickness : ndarray (ny, nx)
        Projected thickness [m].
    weights : ndarray (n_types, ny, nx)
        Volume fraction of each domain type along the beam (sums to 1 inside).
    density : ndarray (n_types, n_elements, ny, nx)
        Projected atom densities N_j^t [m⁻²].
    """

    y: np.ndarray
    x: np.ndarray
    thickness: np.ndarray
    weights: np.ndarray
    density: np.ndarray

    @property
    def pixel_size(self) -> float:
        """Master pixel size [m]."""
        return float(self.y[1] - self.y[0])


def particle_thickness(y: np.ndarray, x: np.ndarray, size: float, rng: np.random.Generator) -> np.ndarray:
    """Projected thickness [m] of a random irregular superellipsoid of largest diameter ≈ ``size``.

    Semi-axes a = size/2, b = a·U(0.65, 0.95), half thickness c = a·U(0.45, 0.7);
    in-plane exponent U(2, 3.2) (rounded to boxy); radius modulated by harmonics 2–5
    (≤ ~15 %); thickness modulated by ±10 % smooth bumps. t = 2c·(1 − u^q)^(1/q), q = 2.
    """
    yy, xx = np.meshgrid(y, x, indexing="ij")
    a = size / 2.0
    b = a * rng.uniform(0.65, 0.95)
    c = a * rng.uniform(0.45, 0.7)
    p = rng.uniform(2.0, 3.2)
    rot = rng.uniform(0.0, np.pi)
    orders = np.arange(2, 6)
    amps = rng.normal(0.0, 0.06, orders.size) / np.sqrt(orders - 1)
    phases = rng.uniform(0.0, 2 * np.pi, orders.size)
    cr, sr = np.cos(rot), np.sin(rot)
    u, v = cr * xx + sr * yy, -sr * xx + cr * yy
    theta = np.arctan2(v, u)
    wobble = 1.0 + np.sum(amps[:, None, None] * np.cos(orders[:, None, None] * theta + phases[:, None, None]), axis=0)
    # scale so the largest radius along the long axis stays ≈ size/2
    grid = np.linspace(0, 2 * np.pi, 721)
    peak = 1.0 + np.max(np.sum(amps[:, None] * np.cos(orders[:, None] * grid + phases[:, None]), axis=0))
    r = (np.abs(u / a) ** p + np.abs(v / b) ** p) ** (1.0 / p) * peak / wobble
    inside = r < 1.0
    t = np.zeros_like(r)
    t[inside] = 2.0 * c * np.sqrt(1.0 - r[inside] ** 2)
    h = y[1] - y[0]
    bumps = ndimage.gaussian_filter(rng.standard_normal(t.shape), sigma=max(1.0, 0.15 * size / h), mode="reflect")
    bumps /= bumps.std() or 1.0
    return t * (1.0 + 0.1 * np.clip(bumps, -2.5, 2.5))


def _unit_field(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(sigma_px, 0.5), mode="reflect")
    return (field - field.mean()) / (field.std() or 1.0)


def domain_weights(
    thickness: np.ndarray,
    pixel_size: float,
    fractions: Sequence[float],
    vanadium_density: Sequence[float],
    domain_size: float,
    shell_thickness: float,
    has_surface: bool,
    surface_affinity: Sequence[float],
    rng: np.random.Generator,
    calibration_steps: int = 60,
) -> np.ndarray:
    """Soft domain-type weights (n_types, ny, nx), summing to 1 inside the particle.

    Parameters
    ----------
    thickness : ndarray
        Projected thickness on the master grid [m].
    pixel_size : float
        Master pixel [m].
    fractions : sequence of float
        Target N_V-weighted fractions of the bulk types (renormalised).
    vanadium_density : sequence of float
        V number density n_V of every type (bulk then surface) [m⁻³].
    domain_size : float
        Typical domain size [m]; the fields are smoothed with σ = domain_size/3.
    shell_thickness : float
        Mean shell thickness (distance from the outline in projection) [m].
    has_surface : bool
        Whether the last type is a surface shell.
    surface_affinity : sequence of float
        Bias of each bulk type towards the surface (field std units).
    rng : numpy.random.Generator
    """
    n_bulk = len(fractions)
    target = np.asarray(fractions, dtype=float)
    target = target / target.sum()
    inside = thickness > 0
    depth = ndimage.distance_transform_edt(inside) * pixel_size
    size = 2.0 * max(float(depth.max()), pixel_size)
    fields = np.stack([_unit_field(thickness.shape, domain_size / 3.0 / pixel_size, rng) for _ in range(n_bulk)])
    near_surface = np.exp(-depth / max(size / 6.0, pixel_size))
    fields += np.asarray(surface_affinity, dtype=float)[:, None, None] * near_surface
    n_v = np.asarray(vanadium_density, dtype=float)
    if has_surface:
        patch = _unit_field(thickness.shape, domain_size / 3.0 / pixel_size, rng)
        local = shell_thickness * np.clip(1.0 + 0.6 * patch, 0.0, None)
        shell = 1.0 / (1.0 + np.exp(-(local - depth) / max(0.25 * shell_thickness, pixel_size)))
    else:
        shell = np.zeros_like(thickness)
    bias = np.log(np.maximum(target, 1e-6))

    def bulk_weights(bias: np.ndarray) -> np.ndarray:
        score = (fields + bias[:, None, None]) / DOMAIN_TEMPERATURE
        score -= score.max(axis=0)
        w = np.exp(score)
        return w / w.sum(axis=0)

    mass = thickness * (1.0 - shell)
    for _ in range(calibration_steps):  # fixed-point update of the biases towards the target fractions
        w = bulk_weights(bias)
        actual = np.einsum("kyx,yx->k", w, mass) * n_v[:n_bulk]
        actual = actual / max(actual.sum(), 1e-300)
        # d ln(fraction)/d bias ≈ 1/temperature, hence the damped Newton-like step below
        bias += 0.5 * DOMAIN_TEMPERATURE * (np.log(np.maximum(target, 1e-6)) - np.log(np.maximum(actual, 1e-9)))
    w = bulk_weights(bias) * (1.0 - shell)
    if has_surface:
        w = np.concatenate([w, shell[None]], axis=0)
    return np.where(inside, w, 0.0)


def make_phantom(
    size: float,
    pixel_size: float,
    fractions: Sequence[float],
    atom_density: Sequence[Mapping[str, float]],
    elements: Sequence[str],
    domain_size: float,
    shell_thickness: float,
    has_surface: bool,
    surface_affinity: Sequence[float],
    rng: np.random.Generator,
) -> Phantom:
    """A particle with domains on a master grid of ``pixel_size`` [m] (see module docstring).

    ``atom_density[t][element]`` is the number density of each element in type t [m⁻³].
    """
    half = size / 2.0 + 4.0 * pixel_size
    n = int(np.ceil(half / pixel_size))
    coords = np.arange(-n, n + 1) * pixel_size
    shape_rng, domain_rng = rng.spawn(2)
    thickness = particle_thickness(coords, coords, size, shape_rng)
    n_v = [d.get("V", 0.0) for d in atom_density]
    weights = domain_weights(
        thickness, pixel_size, fractions, n_v, domain_size, shell_thickness, has_surface, surface_affinity, domain_rng
    )
    per_type = np.array([[d.get(el, 0.0) for el in elements] for d in atom_density])  # (types, elements)
    density = per_type[:, :, None, None] * (weights * thickness)[:, None]
    return Phantom(coords, coords.copy(), thickness, weights, density)
