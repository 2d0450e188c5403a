"""Hand-built Datasets of the whole chain (DESIGN §1c–§1f) for plotting and widget tests.

They follow the data-model contract directly, so the figure and widget tests do not
depend on the reconstructor, the XANES fit or the clustering being finished. Every map
holds a NaN pixel (``NAN_PIXEL``, inside the material) and vacuum outside an ellipse.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.special import erf

from ptyxr import physics
from ptyxr import schema as s

#: Energy grid [eV]: four pre-edge points below 5466 eV as in the paper, denser across the edge.
ENERGIES = np.array([5420.0, 5440.0, 5455.0, 5462.0, *np.linspace(5466.0, 5490.0, 9), 5505.0, 5520.0, 5540.0])
PIXEL = 40e-9  # m
SHAPE = (10, 12)  # (y, x)
NAN_PIXEL = (5, 6)  # (y, x) index of the NaN pixel, inside the material
PARTICLES = (("P1", "as-prepared"), ("D1", "delithiated"))

#: eq. (1) parameters of the three domain types (rows) used to build the spectra.
TYPE_PARAMS = {
    "a": (0.10, 0.12, 0.08),
    "b1": (0.60, 0.45, 0.80),
    "b2": (5478.0, 5481.0, 5484.0),
    "b3": (3.0, 3.5, 2.5),
    "c11": (0.05, 0.15, 0.25),
    "c12": (5468.0, 5469.0, 5470.0),
    "c13": (1.5, 1.5, 1.5),
    "c21": (0.30, 0.20, 0.25),
    "c22": (5490.0, 5492.0, 5494.0),
    "c23": (4.0, 4.0, 4.0),
}
N_TYPES = 3
DOMAIN_FLAGS = {"flag_values": np.arange(N_TYPES, dtype=np.int16), "flag_meanings": "c0 c1 c2"}


def eq1(energy, a, b1, b2, b3, c11, c12, c13, c21, c22, c23):
    """Paper eq. (1) written out independently of ptyxr (reference for the tests)."""
    return (
        a
        + 0.5 * b1 * (1 + erf((energy - b2) / b3))
        + c11 / (1 + ((energy - c12) / c13) ** 2)
        + c21 / (1 + ((energy - c22) / c23) ** 2)
    )


def chemistry_maps(b1, b2, c11, c13, vanadium_density, electron_density) -> dict:
    """chemical_state's maps (DESIGN §1e) by the paper's formulas, written out here.

    Edge energy b2, edge jump b1, pre-edge intensity π·c11·c13 and its ratio to b1, and the
    given N_V and N_e with their ratio; keys in ``schema.CHEMICAL_STATE_OUTPUTS`` order.
    """
    pre_edge = np.pi * c11 * c13
    return {
        s.EDGE_ENERGY: b2,
        s.EDGE_JUMP: b1,
        s.PRE_EDGE_INTENSITY: pre_edge,
        s.PRE_EDGE_RATIO: pre_edge / b1,
        s.VANADIUM_DENSITY: vanadium_density,
        s.ELECTRON_DENSITY: electron_density,
        s.ELECTRONS_PER_VANADIUM: electron_density / vanadium_density,
    }


def _material(shape):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    return ((yy - cy) / (shape[0] / 2 - 0.6)) ** 2 + ((xx - cx) / (shape[1] / 2 - 0.6)) ** 2 <= 1.0


def particle_dataset(name: str = "P1", condition: str = "as-prepared", seed: int = 0) -> xr.Dataset:
    """One particle after spectra → fit_xanes → chemical_state, with its true domain types."""
    rng = np.random.default_rng(seed)
    ny, nx = SHAPE
    material = _material(SHAPE)
    # domain type by column band, shifted by particle so conditions differ in fractions
    types = np.clip((np.arange(nx)[None, :] * N_TYPES) // nx + (seed % 2) * (np.arange(ny)[:, None] > 6), 0, 2)
    types = np.broadcast_to(types, SHAPE).astype(np.int16)
    valid = material.copy()
    valid[NAN_PIXEL] = False

    params = {}
    for p in s.FIT_PARAMETERS:
        base = np.asarray(TYPE_PARAMS[p])[types]
        scatter = 0.02 * np.abs(base) if p in ("a", "b1", "c11", "c21") else 0.2
        if p in ("b3", "c13", "c23"):
            scatter = 0.05
        params[p] = np.where(valid, base + scatter * rng.standard_normal(SHAPE), np.nan)

    energy = ENERGIES[:, None, None]
    # vacuum/NaN pixels get type parameters (then zeroed), avoiding 0/0 in eq. (1)
    filled = [np.where(valid, params[p], np.asarray(TYPE_PARAMS[p])[types]) for p in s.FIT_PARAMETERS]
    absorption = eq1(energy, *filled)
    absorption = np.where(material, absorption, 0.0) + 0.005 * rng.standard_normal((ENERGIES.size, ny, nx))
    absorption[:, NAN_PIXEL[0], NAN_PIXEL[1]] = np.nan
    thickness = np.where(material, 1.0 + 0.1 * rng.standard_normal(SHAPE), 0.0)
    phase = -0.4 * thickness * (1 + 0.02 * np.tanh((energy - 5480.0) / 5.0)) + 0.003 * rng.standard_normal(
        absorption.shape
    )
    phase[:, NAN_PIXEL[0], NAN_PIXEL[1]] = np.nan

    ds = xr.Dataset(
        coords={
            s.ENERGY: s.energy_coord(ENERGIES),
            s.Y: s.length_coord(s.Y, np.arange(ny) * PIXEL, PIXEL),
            s.X: s.length_coord(s.X, np.arange(nx) * PIXEL, PIXEL),
        },
        attrs={s.ATTR_PARTICLE: name, s.ATTR_CONDITION: condition},
    )
    ds[s.ABSORPTION] = s.variable(s.ABSORPTION, absorption)
    ds[s.PHASE] = s.variable(s.PHASE, phase)
    ds[s.MATERIAL] = s.variable(s.MATERIAL, material)
    ds[s.BACKGROUND] = s.variable(s.BACKGROUND, ~material)
    for p in s.FIT_PARAMETERS:
        ds[p] = s.variable(p, params[p])
        ds[p + s.STDERR_SUFFIX] = s.variable(p + s.STDERR_SUFFIX, 0.01 * np.abs(params[p]) + 1e-4)
    ds[s.SUCCESS] = s.variable(s.SUCCESS, valid)
    ds[s.FIT_VALID] = s.variable(s.FIT_VALID, valid)
    ds[s.REDCHI] = s.variable(s.REDCHI, np.where(valid, 1.0, np.nan))
    ds[s.NOISE] = s.variable(s.NOISE, np.where(material, 0.005, np.nan))

    b1, b2 = params["b1"], params["b2"]
    lam = physics.wavelength(np.where(valid, b2, 5480.0))
    n_v = b1 / (physics.CLASSICAL_ELECTRON_RADIUS * lam * physics.PAPER_DELTA_F2_V)
    n_e = -phase[0] / (physics.CLASSICAL_ELECTRON_RADIUS * physics.wavelength(ENERGIES[0]))
    maps = chemistry_maps(b1, b2, params["c11"], params["c13"], n_v, np.where(valid, n_e, np.nan))
    for key, value in maps.items():
        ds[key] = s.variable(key, value)
    ds["true_type"] = xr.DataArray(
        np.where(valid, types, s.MISSING_DOMAIN).astype(np.int16),
        dims=(s.Y, s.X),
        attrs={s.ATTR_UNITS: "1", s.ATTR_LONG_NAME: "true domain type"},
    )
    return ds


def particle_datasets() -> list[xr.Dataset]:
    """The per-particle Datasets (P1 as-prepared, D1 delithiated)."""
    return [particle_dataset(name, cond, seed=i) for i, (name, cond) in enumerate(PARTICLES)]


def chain_dataset() -> xr.Dataset:
    """Particles combined along ``particle`` plus DESIGN §1f domain outputs (labels = true types)."""
    parts = particle_datasets()
    ds = xr.concat(parts, dim=s.PARTICLE, combine_attrs="drop_conflicts")
    ds = ds.assign_coords(
        {
            s.PARTICLE: [p.attrs[s.ATTR_PARTICLE] for p in parts],
            s.CONDITION: (s.PARTICLE, [p.attrs[s.ATTR_CONDITION] for p in parts], s.attrs_of(s.CONDITION)),
        }
    )
    domain = ds["true_type"].values
    ds[s.DOMAIN] = s.variable(s.DOMAIN, domain, **DOMAIN_FLAGS)
    valid = domain >= 0
    feats = np.stack([ds[f].values[valid] for f in s.DOMAIN_FEATURES], axis=1)
    labels = domain[valid]
    centers = np.stack([feats[labels == k].mean(axis=0) for k in range(N_TYPES)])
    ds[s.CLUSTER_CENTER] = s.variable(s.CLUSTER_CENTER, centers)
    ds = ds.assign_coords({s.CLUSTER: np.arange(N_TYPES), s.FEATURE: list(s.DOMAIN_FEATURES)})
    groups = list(dict.fromkeys(ds[s.CONDITION].values.tolist()))
    fraction = np.zeros((len(groups), N_TYPES))
    for g, group in enumerate(groups):
        in_group = (ds[s.CONDITION].values == group)[:, None, None] & valid
        weights = ds[s.VANADIUM_DENSITY].values
        total = weights[in_group].sum()
        for k in range(N_TYPES):
            fraction[g, k] = weights[in_group & (domain == k)].sum() / total
    ds[s.FRACTION] = s.variable(s.FRACTION, fraction)
    ds = ds.assign_coords({s.GROUP: groups})
    norm = (ds[s.ABSORPTION] - ds["a"]) / ds["b1"]
    spectra = np.stack([norm.values.transpose(1, 0, 2, 3)[:, domain == k].mean(axis=1) for k in range(N_TYPES)])
    ds[s.CLUSTER_SPECTRUM] = s.variable(s.CLUSTER_SPECTRUM, spectra)
    return ds


def elbow_result(as_dataset: bool = False) -> xr.DataArray | xr.Dataset:
    """Within-cluster SSE vs k with attr ``suggested_k`` = 3."""
    k = np.arange(1, 9)
    sse = np.array([100.0, 40.0, 12.0, 10.0, 8.5, 7.5, 6.8, 6.2])
    da = xr.DataArray(
        sse,
        dims=("k",),
        coords={"k": k},
        name="sse",
        attrs={s.ATTR_UNITS: "1", s.ATTR_LONG_NAME: "within-cluster sum of squares", "suggested_k": 3},
    )
    return da.to_dataset().assign_attrs(suggested_k=3) if as_dataset else da


def chain_result():
    """A ``ptyxr.pipeline.ChainResult`` holding the hand-built Datasets."""
    from ptyxr.pipeline import ChainResult

    return ChainResult(
        particles=particle_datasets(), combined=chain_dataset(), elbow=elbow_result(), timings={"cluster": 0.1}
    )
