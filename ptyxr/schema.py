"""Names, units and validation of ptyxr's data model (DESIGN §1).

Every dim, coordinate, variable and attribute name used anywhere in ptyxr comes from
this module, never retyped as a string literal elsewhere. Each variable has one
:class:`VariableSpec` holding its dims, units and ``long_name``; :func:`variable` builds
a DataArray with those attrs so no stage can forget them.

Validators (``validate_*``) check a stage's input and raise :class:`SchemaError` with a
message that names the problem and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ptyxr.errors import SchemaError

# --------------------------------------------------------------------------- dims
ENERGY = "energy"
SCAN = "scan"
DET_Y = "det_y"
DET_X = "det_x"
PROBE_Y = "probe_y"
PROBE_X = "probe_x"
Y = "y"
X = "x"
ITERATION = "iteration"
PARTICLE = "particle"
CLUSTER = "cluster"
FEATURE = "feature"
GROUP = "group"
N_CLUSTERS = "n_clusters"  # number of clusters k of the elbow curve (domains.elbow)
SPATIAL_FREQUENCY = "spatial_frequency"  # ring centre |q| of resolution curves (ptyxr.resolution)
PROBE_MODE = "probe_mode"  # mutually incoherent probe modes of reconstruct(probe_modes=K > 1)
#: Storage-only trailing dim (real, imag) of complex variables in netCDF (ptyxr.io.netcdf);
#: never present in an in-memory Dataset.
COMPLEX_PART = "complex_part"
#: Checkpoint-only dim: the successive per-frame flux estimates of ``reconstruct(refine_flux=True)``.
FLUX_REFINEMENT = "flux_refinement"
#: Checkpoint-only variables (energy,) [pixels of each energy's grid]: the registration shifts the
#: flux refinement's cross-energy prior made once (not ``shift_y``/``shift_x``, which are metres).
FLUX_PRIOR_SHIFT_Y = "flux_prior_shift_y"
FLUX_PRIOR_SHIFT_X = "flux_prior_shift_x"

# ------------------------------------------------------------------- coordinates
CONDITION = "condition"  # non-dim coord on PARTICLE

# ------------------------------------------------------------- 1a raw scan series
INTENSITY = "intensity"
POSITION_Y = "position_y"
POSITION_X = "position_x"
DETECTOR_MASK = "detector_mask"
PROBE_GUESS = "probe_guess"
MONITOR = "monitor"  # incident flux (I0) per frame, when the beamline recorded one

# ---------------------------------------------------------------- 1b reconstruction
OBJECT = "object"
PROBE = "probe"
FOURIER_ERROR = "fourier_error"
POSITION_CORRECTION_Y = "position_correction_y"
POSITION_CORRECTION_X = "position_correction_x"
COVERAGE = "coverage"
RELATIVE_FLUX = "relative_flux"  # per-frame incident flux / its mean at that energy (monitor or refined)
PROBE_MODE_FRACTION = "probe_mode_fraction"  # only with probe_modes > 1

# -------------------------------------------------------------------- 1c spectra
ABSORPTION = "absorption"
PHASE = "phase"
BACKGROUND = "background"
SHIFT_Y = "shift_y"
SHIFT_X = "shift_x"
MATERIAL = "material"

# ------------------------------------------------------------------ 1d XANES fit
FIT_PARAMETERS = ("a", "b1", "b2", "b3", "c11", "c12", "c13", "c21", "c22", "c23")
STDERR_SUFFIX = "_stderr"
REDCHI = "redchi"
SUCCESS = "success"
NOISE = "noise"
FIT_VALID = "fit_valid"
PRE_EDGE_VALID = "pre_edge_valid"
ABSORPTION_FIT = "absorption_fit"
EDGE_UNCERTAINTY = "b2_uncertainty"  # b2 stderr ⊕ eq. (1) model error (ptyxr.xanes.uncertainty)
EDGE_ARCTAN_FRACTION = "eta"  # arctan share of the edge step, fit_xanes(edge_step="erf+arctan")

# ------------------------------------------------ spatial resolution (ptyxr.resolution)
PRTF = "prtf"
PRTF_RESOLUTION = "prtf_resolution"
FRC = "frc"
FRC_THRESHOLD = "frc_threshold"
FRC_RESOLUTION = "frc_resolution"
ATTR_THRESHOLD = "threshold"

# ------------------------------------------------- XDI transmission XAFS (io.xdi)
XDI_I0 = "i0"
XDI_ITRANS = "itrans"
XDI_MU = "mu"

# ------------------------------------------------------------- 1e chemical state
EDGE_ENERGY = "edge_energy"
EDGE_JUMP = "edge_jump"
PRE_EDGE_INTENSITY = "pre_edge_intensity"
PRE_EDGE_RATIO = "pre_edge_ratio"
VANADIUM_DENSITY = "vanadium_density"
ELECTRON_DENSITY = "electron_density"
ELECTRONS_PER_VANADIUM = "electrons_per_vanadium"

# -------------------------------------------------------------------- 1f domains
DOMAIN = "domain"
CLUSTER_CENTER = "cluster_center"
FRACTION = "fraction"
CLUSTER_SPECTRUM = "cluster_spectrum"
DOMAIN_FEATURES = (EDGE_ENERGY, ELECTRONS_PER_VANADIUM, PRE_EDGE_RATIO)
MISSING_DOMAIN = -1
INERTIA = "inertia"  # within-cluster sum of squared errors vs k (domains.elbow)
FRACTION_LOW = "fraction_low"  # bootstrap confidence bounds of FRACTION (domains.cluster)
FRACTION_HIGH = "fraction_high"
DOMAIN_OUTLIER = "domain_outlier"  # valid features, but far from every cluster centre: unlabelled
LABELLED_FRACTION = "labelled_fraction"  # share of a particle's pixels that got a domain label
OUTLIER_FRACTION = "outlier_fraction"  # share of a particle's pixels left unlabelled as outliers
SILHOUETTE = "silhouette"  # mean silhouette score vs k (domains.choose_k)
GAP = "gap"  # gap statistic vs k (Tibshirani et al. 2001; domains.choose_k)
GAP_STDERR = "gap_stderr"

# ------------------------------------------- simulation ground truth (ptyxr.simulate)
DOMAIN_TYPE = "domain_type"  # dim: the simulator's chemical domain types (coord: their names)
ELEMENT = "element"  # dim: chemical elements (coord: symbols)
THICKNESS = "thickness"
PARTIAL_DENSITY = "partial_density"
ANOMALOUS_F1 = "anomalous_f1"
ANOMALOUS_F2 = "anomalous_f2"
ATOMIC_NUMBER = "atomic_number"
TRUE_PREFIX = "true_"
TRUE_FIT_PARAMETERS = tuple(TRUE_PREFIX + p for p in FIT_PARAMETERS)
TRUE_FRACTION = TRUE_PREFIX + FRACTION
TRUE_PRE_EDGE_RATIO = TRUE_PREFIX + PRE_EDGE_RATIO
TRUE_ELECTRONS_PER_VANADIUM = TRUE_PREFIX + ELECTRONS_PER_VANADIUM
# simulation truth of issue 12's realism (ptyxr.simulate): where the probe really was, the
# relative incident flux of each frame, and the mutually incoherent probe modes
TRUE_POSITION_Y = TRUE_PREFIX + POSITION_Y
TRUE_POSITION_X = TRUE_PREFIX + POSITION_X
TRUE_FLUX = TRUE_PREFIX + "flux"
TRUE_PROBE_MODES = TRUE_PREFIX + "probe_modes"
SIM_PROBE_MODE = "simulated_probe_mode"  # dim of TRUE_PROBE_MODES

# ------------------------------------------------------------------ Dataset attrs
ATTR_DETECTOR_DISTANCE = "detector_distance"
ATTR_DETECTOR_PIXEL_SIZE = "detector_pixel_size"
ATTR_PARTICLE = "particle"
ATTR_CONDITION = "condition"
ATTR_PROBE_FWHM = "probe_fwhm"
ATTR_PROBE_DEFOCUS = "probe_defocus"
ATTR_PIXEL_SIZE = "pixel_size"
ATTR_HISTORY = "history"
ATTR_UNITS = "units"
ATTR_LONG_NAME = "long_name"
# reconstruct checkpoints (ptyxr.reconstruct.api)
ATTR_ITERATIONS_DONE = "iterations_done"
ATTR_RNG_STATE = "rng_state"
ATTR_CHECKPOINT = "ptyxr_checkpoint"
REAL_SUFFIX = "_real"
IMAG_SUFFIX = "_imag"

# Units used throughout (strings as written into attrs).
EV = "eV"
METRE = "m"
RADIAN = "rad"
PER_SQUARE_METRE = "m-2"
DIMENSIONLESS = "1"
COUNTS = "counts"


@dataclass(frozen=True)
class VariableSpec:
    """Contract of one variable: dims, units, long_name and dtype (DESIGN §1)."""

    name: str
    dims: tuple[str, ...]
    units: str
    long_name: str
    dtype: str | None = None

    @property
    def attrs(self) -> dict[str, str]:
        """The ``units``/``long_name`` attrs every variable of this name carries."""
        return {ATTR_UNITS: self.units, ATTR_LONG_NAME: self.long_name}


def _specs(*specs: VariableSpec) -> dict[str, VariableSpec]:
    return {s.name: s for s in specs}


_FIT_UNITS = {
    "a": "1",
    "b1": "1",
    "b2": EV,
    "b3": EV,
    "c11": "1",
    "c12": EV,
    "c13": EV,
    "c21": "1",
    "c22": EV,
    "c23": EV,
}
_FIT_LONG = {
    "a": "constant background of absorption",
    "b1": "edge jump (erf step height)",
    "b2": "edge energy (erf step centre)",
    "b3": "edge width (erf step width)",
    "c11": "pre-edge Lorentzian height",
    "c12": "pre-edge Lorentzian centre",
    "c13": "pre-edge Lorentzian half width",
    "c21": "white-line Lorentzian height",
    "c22": "white-line Lorentzian centre",
    "c23": "white-line Lorentzian half width",
}

SPECS: dict[str, VariableSpec] = _specs(
    # coordinates
    VariableSpec(ENERGY, (ENERGY,), EV, "photon energy", "float64"),
    VariableSpec(Y, (Y,), METRE, "y position", "float64"),
    VariableSpec(X, (X,), METRE, "x position", "float64"),
    VariableSpec(ITERATION, (ITERATION,), DIMENSIONLESS, "iteration", "int64"),
    VariableSpec(CONDITION, (PARTICLE,), DIMENSIONLESS, "sample condition"),
    # 1a
    VariableSpec(INTENSITY, (ENERGY, SCAN, DET_Y, DET_X), COUNTS, "diffracted intensity", "float32"),
    VariableSpec(POSITION_Y, (ENERGY, SCAN), METRE, "probe position y", "float64"),
    VariableSpec(POSITION_X, (ENERGY, SCAN), METRE, "probe position x", "float64"),
    VariableSpec(DETECTOR_MASK, (DET_Y, DET_X), DIMENSIONLESS, "valid detector pixel", "bool"),
    VariableSpec(PROBE_GUESS, (ENERGY, PROBE_Y, PROBE_X), "sqrt(counts)", "initial probe", "complex64"),
    VariableSpec(MONITOR, (ENERGY, SCAN), COUNTS, "incident flux monitor (I0) per frame", "float64"),
    VariableSpec(TRUE_POSITION_Y, (ENERGY, SCAN), METRE, "true probe position y (simulation)", "float64"),
    VariableSpec(TRUE_POSITION_X, (ENERGY, SCAN), METRE, "true probe position x (simulation)", "float64"),
    VariableSpec(TRUE_FLUX, (ENERGY, SCAN), DIMENSIONLESS, "true relative incident flux (simulation)", "float64"),
    VariableSpec(
        TRUE_PROBE_MODES,
        (SIM_PROBE_MODE, ENERGY, PROBE_Y, PROBE_X),
        "sqrt(counts)",
        "true mutually incoherent probe modes (simulation)",
        "complex64",
    ),
    # 1b
    VariableSpec(OBJECT, (ENERGY, Y, X), DIMENSIONLESS, "complex transmission of the object", "complex64"),
    VariableSpec(PROBE, (ENERGY, PROBE_Y, PROBE_X), "sqrt(counts)", "complex probe", "complex64"),
    VariableSpec(FOURIER_ERROR, (ENERGY, ITERATION), DIMENSIONLESS, "normalised Fourier error", "float32"),
    VariableSpec(COVERAGE, (Y, X), DIMENSIONLESS, "illuminated by the scan", "bool"),
    VariableSpec(
        RELATIVE_FLUX,
        (ENERGY, SCAN),
        DIMENSIONLESS,
        "relative incident flux per frame (mean 1 per energy; monitor or refined)",
        "float64",
    ),
    VariableSpec(POSITION_CORRECTION_Y, (ENERGY, SCAN), METRE, "refined minus recorded probe position y", "float64"),
    VariableSpec(POSITION_CORRECTION_X, (ENERGY, SCAN), METRE, "refined minus recorded probe position x", "float64"),
    VariableSpec(
        PROBE_MODE_FRACTION,
        (ENERGY, PROBE_MODE),
        DIMENSIONLESS,
        "power fraction of each mutually incoherent probe mode",
        "float64",
    ),
    # 1c
    VariableSpec(ABSORPTION, (ENERGY, Y, X), DIMENSIONLESS, "absorption mu t (amplitude attenuation)", "float64"),
    VariableSpec(PHASE, (ENERGY, Y, X), RADIAN, "phase shift", "float64"),
    VariableSpec(BACKGROUND, (Y, X), DIMENSIONLESS, "vacuum background region", "bool"),
    VariableSpec(SHIFT_Y, (ENERGY,), METRE, "registration shift y", "float64"),
    VariableSpec(SHIFT_X, (ENERGY,), METRE, "registration shift x", "float64"),
    VariableSpec(MATERIAL, (Y, X), DIMENSIONLESS, "inside a particle", "bool"),
    # 1d
    *[VariableSpec(p, (Y, X), _FIT_UNITS[p], _FIT_LONG[p], "float64") for p in FIT_PARAMETERS],
    *[
        VariableSpec(p + STDERR_SUFFIX, (Y, X), _FIT_UNITS[p], "standard error of " + _FIT_LONG[p], "float64")
        for p in FIT_PARAMETERS
    ],
    VariableSpec(REDCHI, (Y, X), DIMENSIONLESS, "reduced chi-square of the XANES fit", "float64"),
    VariableSpec(SUCCESS, (Y, X), DIMENSIONLESS, "XANES fit converged", "bool"),
    VariableSpec(NOISE, (Y, X), DIMENSIONLESS, "noise of absorption (pre-edge std)", "float64"),
    VariableSpec(FIT_VALID, (Y, X), DIMENSIONLESS, "XANES fit valid (material, edge jump >= noise, converged)", "bool"),
    VariableSpec(
        PRE_EDGE_VALID,
        (Y, X),
        DIMENSIONLESS,
        "pre-edge peak resolved (fit valid, width not collapsed to its lower bound)",
        "bool",
    ),
    VariableSpec(ABSORPTION_FIT, (ENERGY, Y, X), DIMENSIONLESS, "fitted absorption mu t", "float64"),
    VariableSpec(
        EDGE_UNCERTAINTY,
        (Y, X),
        EV,
        "uncertainty of the edge energy b2: standard error combined with eq. (1) model error",
        "float64",
    ),
    VariableSpec(
        EDGE_ARCTAN_FRACTION, (Y, X), DIMENSIONLESS, "arctan fraction eta of the edge step (erf+arctan)", "float64"
    ),
    VariableSpec(
        EDGE_ARCTAN_FRACTION + STDERR_SUFFIX,
        (Y, X),
        DIMENSIONLESS,
        "standard error of the arctan fraction eta of the edge step",
        "float64",
    ),
    # spatial resolution (ptyxr.resolution)
    VariableSpec(SPATIAL_FREQUENCY, (SPATIAL_FREQUENCY,), "m-1", "spatial frequency |q| (ring centre)", "float64"),
    VariableSpec(
        PRTF,
        (ENERGY, SPATIAL_FREQUENCY),
        DIMENSIONLESS,
        "phase retrieval transfer function (modelled / measured far-field amplitude, ring average)",
        "float64",
    ),
    VariableSpec(PRTF_RESOLUTION, (ENERGY,), METRE, "full-period resolution where the PRTF falls below 1/e", "float64"),
    VariableSpec(
        FRC,
        (ENERGY, SPATIAL_FREQUENCY),
        DIMENSIONLESS,
        "Fourier ring correlation of two half reconstructions",
        "float64",
    ),
    VariableSpec(
        FRC_THRESHOLD, (SPATIAL_FREQUENCY,), DIMENSIONLESS, "half-bit FRC threshold (van Heel & Schatz 2005)", "float64"
    ),
    VariableSpec(
        FRC_RESOLUTION,
        (ENERGY,),
        METRE,
        "full-period resolution where the FRC crosses the half-bit threshold",
        "float64",
    ),
    # XDI transmission XAFS (ptyxr.io.xdi)
    VariableSpec(XDI_I0, (ENERGY,), COUNTS, "incident intensity i0", "float64"),
    VariableSpec(XDI_ITRANS, (ENERGY,), COUNTS, "transmitted intensity itrans", "float64"),
    VariableSpec(XDI_MU, (ENERGY,), DIMENSIONLESS, "absorption mu t = ln(i0/itrans)", "float64"),
    # 1e
    VariableSpec(EDGE_ENERGY, (Y, X), EV, "edge energy", "float64"),
    VariableSpec(EDGE_JUMP, (Y, X), DIMENSIONLESS, "edge jump (delta mu t)", "float64"),
    VariableSpec(PRE_EDGE_INTENSITY, (Y, X), EV, "pre-edge peak intensity PE", "float64"),
    VariableSpec(PRE_EDGE_RATIO, (Y, X), EV, "normalised pre-edge intensity PE/delta mu t", "float64"),
    VariableSpec(VANADIUM_DENSITY, (Y, X), PER_SQUARE_METRE, "projected V density N_V", "float64"),
    VariableSpec(
        ELECTRON_DENSITY, (Y, X), PER_SQUARE_METRE, "effective projected electron density Re[N_e^eff]", "float64"
    ),
    VariableSpec(ELECTRONS_PER_VANADIUM, (Y, X), DIMENSIONLESS, "electrons per vanadium Re[N_e^eff]/N_V", "float64"),
    # 1f
    VariableSpec(DOMAIN, (PARTICLE, Y, X), DIMENSIONLESS, "chemical domain (cluster label)", "int16"),
    VariableSpec(CLUSTER_CENTER, (CLUSTER, FEATURE), "various", "cluster centre in original feature units", "float64"),
    VariableSpec(FRACTION, (GROUP, CLUSTER), DIMENSIONLESS, "N_V-weighted fraction of cluster", "float64"),
    VariableSpec(
        CLUSTER_SPECTRUM, (CLUSTER, ENERGY), DIMENSIONLESS, "mean normalised absorption of cluster", "float64"
    ),
    VariableSpec(
        INERTIA,
        (N_CLUSTERS,),
        DIMENSIONLESS,
        "within-cluster sum of squared errors of the standardised features",
        "float64",
    ),
    VariableSpec(FRACTION_LOW, (GROUP, CLUSTER), DIMENSIONLESS, "lower bootstrap bound of fraction", "float64"),
    VariableSpec(FRACTION_HIGH, (GROUP, CLUSTER), DIMENSIONLESS, "upper bootstrap bound of fraction", "float64"),
    VariableSpec(
        DOMAIN_OUTLIER, (PARTICLE, Y, X), DIMENSIONLESS, "valid features far from every cluster centre", "bool"
    ),
    VariableSpec(
        LABELLED_FRACTION, (PARTICLE,), DIMENSIONLESS, "share of particle pixels with a domain label", "float64"
    ),
    VariableSpec(
        OUTLIER_FRACTION, (PARTICLE,), DIMENSIONLESS, "share of particle pixels unlabelled as outliers", "float64"
    ),
    VariableSpec(SILHOUETTE, (N_CLUSTERS,), DIMENSIONLESS, "mean silhouette score", "float64"),
    VariableSpec(GAP, (N_CLUSTERS,), DIMENSIONLESS, "gap statistic of log within-cluster dispersion", "float64"),
    VariableSpec(GAP_STDERR, (N_CLUSTERS,), DIMENSIONLESS, "standard error of the gap statistic", "float64"),
)

# Simulation ground truth (ptyxr.simulate): per-type eq. (1) parameters of f'' of V.
SPECS.update(
    _specs(
        VariableSpec(DOMAIN_TYPE, (DOMAIN_TYPE,), DIMENSIONLESS, "simulated chemical domain type"),
        VariableSpec(ELEMENT, (ELEMENT,), DIMENSIONLESS, "chemical element"),
        VariableSpec(THICKNESS, (Y, X), METRE, "projected thickness", "float64"),
        VariableSpec(
            PARTIAL_DENSITY,
            (DOMAIN_TYPE, ELEMENT, Y, X),
            PER_SQUARE_METRE,
            "projected atom density per domain type and element",
            "float64",
        ),
        VariableSpec(
            ANOMALOUS_F1,
            (DOMAIN_TYPE, ELEMENT, ENERGY),
            DIMENSIONLESS,
            "anomalous scattering factor f' (electrons)",
            "float64",
        ),
        VariableSpec(
            ANOMALOUS_F2,
            (DOMAIN_TYPE, ELEMENT, ENERGY),
            DIMENSIONLESS,
            "anomalous scattering factor f'' (electrons)",
            "float64",
        ),
        VariableSpec(ATOMIC_NUMBER, (ELEMENT,), DIMENSIONLESS, "atomic number Z", "int64"),
        *[
            VariableSpec(
                TRUE_PREFIX + p,
                (DOMAIN_TYPE,),
                _FIT_UNITS[p],
                "true " + _FIT_LONG[p] + " of f'' of V (heights in electrons)",
                "float64",
            )
            for p in FIT_PARAMETERS
        ],
        VariableSpec(
            TRUE_FRACTION, (DOMAIN_TYPE,), DIMENSIONLESS, "true N_V-weighted fraction of domain type", "float64"
        ),
        VariableSpec(TRUE_PRE_EDGE_RATIO, (DOMAIN_TYPE,), EV, "true PE/delta mu t of domain type", "float64"),
        VariableSpec(
            TRUE_ELECTRONS_PER_VANADIUM, (DOMAIN_TYPE,), DIMENSIONLESS, "true Re[N_e^eff]/N_V of domain type", "float64"
        ),
    )
)

#: Variables required at the entry of each stage.
RAW_REQUIRED = (INTENSITY, POSITION_Y, POSITION_X)
RAW_REQUIRED_ATTRS = (ATTR_DETECTOR_DISTANCE, ATTR_DETECTOR_PIXEL_SIZE)
RECONSTRUCTION_REQUIRED = (OBJECT, PROBE, COVERAGE)
SPECTRA_REQUIRED = (ABSORPTION, PHASE)
FIT_REQUIRED = (*FIT_PARAMETERS, FIT_VALID)
CHEMICAL_STATE_REQUIRED = DOMAIN_FEATURES + (VANADIUM_DENSITY,)
#: Variables ``chemical_state`` adds (DESIGN §1e), in the order it writes them.
CHEMICAL_STATE_OUTPUTS = (
    EDGE_ENERGY,
    EDGE_JUMP,
    PRE_EDGE_INTENSITY,
    PRE_EDGE_RATIO,
    VANADIUM_DENSITY,
    ELECTRON_DENSITY,
    ELECTRONS_PER_VANADIUM,
)


def spec(name: str) -> VariableSpec:
    """The :class:`VariableSpec` of ``name``; raises KeyError naming the known variables."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a ptyxr variable; known: {sorted(SPECS)}") from None


def attrs_of(name: str, **extra: Any) -> dict[str, Any]:
    """``units`` and ``long_name`` of ``name`` plus any ``extra`` attrs."""
    return {**spec(name).attrs, **extra}


def variable(name: str, data: Any, dims: Iterable[str] | None = None, **extra_attrs: Any) -> xr.DataArray:
    """A DataArray of variable ``name`` with the contract's dims, units and long_name.

    Parameters
    ----------
    name : str
        Variable name from this module.
    data : array-like
        Values (numpy or dask); the dims default to the contract's dims, with a leading
        ``particle`` dim added when ``data`` has one more axis than the contract.
    dims : iterable of str, optional
        Override the dims (e.g. a leading ``particle``).
    **extra_attrs
        Extra attrs (e.g. ``flag_values``).
    """
    contract = spec(name)
    if dims is None:
        dims = contract.dims
        if np.ndim(data) == len(dims) + 1:
            dims = (PARTICLE, *dims)
    return xr.DataArray(data, dims=tuple(dims), name=name, attrs=attrs_of(name, **extra_attrs))


def with_attrs(da: xr.DataArray, name: str, **extra_attrs: Any) -> xr.DataArray:
    """``da`` renamed to ``name`` with the contract's attrs replacing any inherited ones."""
    out = da.rename(name)
    out.attrs = attrs_of(name, **extra_attrs)
    return out


def energy_coord(energy: Any) -> xr.DataArray:
    """The ``energy`` coordinate [eV] as float64 with its attrs."""
    return variable(ENERGY, np.asarray(energy, dtype=np.float64))


def length_coord(name: str, values: Any, pixel_size: float | None = None) -> xr.DataArray:
    """A ``y``/``x`` coordinate [m]; ``pixel_size`` is recorded in its attrs when given."""
    extra: dict[str, Any] = {} if pixel_size is None else {ATTR_PIXEL_SIZE: float(pixel_size)}
    return variable(name, np.asarray(values, dtype=np.float64), **extra)


# ---------------------------------------------------------------- validators
def _fail(msg: str) -> None:
    raise SchemaError(msg)


def require_dataset(ds: Any, stage: str) -> xr.Dataset:
    """Raise unless ``ds`` is an xarray Dataset."""
    if not isinstance(ds, xr.Dataset):
        _fail(f"{stage} needs an xarray.Dataset, got {type(ds).__name__}.")
    return ds


def require_variables(ds: xr.Dataset, names: Iterable[str], stage: str, hint: str = "") -> None:
    """Raise naming every variable of ``names`` that ``ds`` lacks."""
    missing = [n for n in names if n not in ds.variables]
    if missing:
        _fail(
            f"{stage} needs variable(s) {missing} which the Dataset lacks "
            f"(it has {sorted(map(str, ds.data_vars))}). {hint}".strip()
        )


def require_dims(da: xr.DataArray, dims: Iterable[str], stage: str, allow_particle: bool = True) -> None:
    """Raise unless ``da`` has exactly ``dims`` (optionally behind a leading ``particle``)."""
    dims = tuple(dims)
    ok = da.dims == dims or (allow_particle and da.dims == (PARTICLE, *dims))
    if not ok:
        _fail(
            f"{stage}: variable {da.name!r} has dims {da.dims}, expected {dims}"
            + (f" or {(PARTICLE, *dims)}" if allow_particle else "")
            + ". Use .transpose()/.rename() to match the ptyxr data model (DESIGN §1)."
        )


def require_energy(ds: xr.Dataset, stage: str, minimum: int = 1) -> np.ndarray:
    """Check the ``energy`` coord: present, finite, strictly increasing, at least ``minimum`` long."""
    if ENERGY not in ds.coords:
        _fail(f"{stage} needs an {ENERGY!r} coordinate in eV; assign one with ds.assign_coords(energy=...).")
    if ds[ENERGY].dtype.kind not in "iuf":  # numeric strings would silently pass float()
        _fail(f"{stage}: the {ENERGY!r} coordinate must hold numbers in eV, got dtype {ds[ENERGY].dtype}.")
    energy = np.asarray(ds[ENERGY].values, dtype=float)
    if energy.ndim != 1:
        _fail(f"{stage}: the {ENERGY!r} coordinate must be 1-D, got shape {energy.shape}.")
    if energy.size < minimum:
        _fail(f"{stage} needs at least {minimum} energies, got {energy.size}.")
    if not np.all(np.isfinite(energy)):
        _fail(f"{stage}: the {ENERGY!r} coordinate holds non-finite values.")
    if energy.size > 1 and np.any(np.diff(energy) <= 0):
        bad = np.flatnonzero(np.diff(energy) <= 0)
        _fail(
            f"{stage}: energies must be strictly increasing (duplicate or decreasing at index "
            f"{bad.tolist()[:5]}); sort with ds.sortby('energy') and drop duplicates."
        )
    return energy


def require_attrs(ds: xr.Dataset, names: Iterable[str], stage: str, positive: bool = True) -> None:
    """Raise naming each missing (or non-positive/non-finite) numeric Dataset attr."""
    for name in names:
        if name not in ds.attrs:
            _fail(f"{stage} needs the Dataset attr {name!r} (SI units); set ds.attrs[{name!r}] = value.")
        try:
            value = float(ds.attrs[name])
        except (TypeError, ValueError):
            _fail(f"{stage}: attr {name!r} must be a number, got {ds.attrs[name]!r}.")
        if positive and not (np.isfinite(value) and value > 0):
            _fail(f"{stage}: attr {name!r} must be a positive finite number, got {value!r}.")


def _has_dask(da: xr.DataArray) -> bool:
    return hasattr(da.data, "dask")


def validate_raw(ds: Any) -> xr.Dataset:
    """Validate a raw scan series (DESIGN §1a) at the entry of ``reconstruct``.

    Checks variables, dims, energies, detector attrs, finite non-negative intensities with
    at least one valid pixel per frame, and finite positions for every scan point that
    has a frame. Raises :class:`SchemaError` otherwise.
    """
    stage = "reconstruct"
    ds = require_dataset(ds, stage)
    require_variables(ds, RAW_REQUIRED, stage, "See DESIGN §1a or ptyxr.io.scan_from_arrays().")
    require_energy(ds, stage)
    for name in RAW_REQUIRED:
        require_dims(ds[name], spec(name).dims, stage)
        if ds[name].dtype.kind not in "iuf":  # complex/str/bool/object are not counts or metres
            _fail(
                f"{stage}: {name!r} must hold real numbers, got dtype {ds[name].dtype}; convert it with "
                f".astype('float32') (intensity) or .astype('float64') (positions)."
            )
    require_attrs(ds, RAW_REQUIRED_ATTRS, stage)
    intensity = ds[INTENSITY]
    if intensity.sizes[DET_Y] != intensity.sizes[DET_X]:
        _fail(
            f"{stage}: detector frames must be square, got {intensity.sizes[DET_Y]}x{intensity.sizes[DET_X]};"
            " crop them to N x N around the zero frequency."
        )
    if DETECTOR_MASK in ds:
        require_dims(ds[DETECTOR_MASK], spec(DETECTOR_MASK).dims, stage, allow_particle=False)
        if ds[DETECTOR_MASK].dtype != bool:
            _fail(f"{stage}: {DETECTOR_MASK!r} must be boolean (True = valid pixel).")
        if not bool(ds[DETECTOR_MASK].any()):
            _fail(f"{stage}: {DETECTOR_MASK!r} marks no valid pixel.")
    if not _has_dask(intensity):
        values = intensity.values
        if np.isinf(values).any():
            _fail(f"{stage}: {INTENSITY!r} holds +-inf values; mark invalid pixels with NaN or in {DETECTOR_MASK!r}.")
        if (values < 0).any():
            _fail(
                f"{stage}: {INTENSITY!r} holds negative counts (min {np.nanmin(values):g}); subtract dark "
                "frames and clip at zero, or mark those pixels NaN."
            )
    py, px = ds[POSITION_Y].values, ds[POSITION_X].values
    if np.isinf(py).any() or np.isinf(px).any():
        _fail(f"{stage}: positions hold +-inf; use NaN only for padding scan points.")
    pos_nan = np.isnan(py) | np.isnan(px)
    if not _has_dask(intensity):
        frame_valid = np.isfinite(intensity.values).any(axis=(-2, -1))
        if DETECTOR_MASK in ds:
            mask = ds[DETECTOR_MASK].values
            frame_valid = np.isfinite(np.where(mask, intensity.values, np.nan)).any(axis=(-2, -1))
        used = ~pos_nan
        if (used & ~frame_valid).any():
            _fail(
                f"{stage}: some scan points have a position but a frame with no valid pixel; mark them as "
                "padding (NaN position) or fix the mask."
            )
        if ((pos_nan & ~(np.isnan(py) & np.isnan(px))) | (pos_nan & frame_valid)).any():
            _fail(
                f"{stage}: NaN positions found at scan points that hold data; NaN positions are allowed only "
                "for padding (frames that are entirely NaN)."
            )
    if pos_nan.all(axis=-1).any():
        _fail(f"{stage}: at least one energy has no scan point with a finite position.")
    return ds


def validate_reconstruction(ds: Any, stage: str = "align/spectra") -> xr.Dataset:
    """Validate a reconstruction (DESIGN §1b)."""
    ds = require_dataset(ds, stage)
    require_variables(ds, (OBJECT,), stage, "Run ds.ptyxr.reconstruct() first.")
    require_energy(ds, stage)
    require_dims(ds[OBJECT], spec(OBJECT).dims, stage)
    if not np.iscomplexobj(ds[OBJECT].dtype.type()):
        _fail(f"{stage}: {OBJECT!r} must be complex (transmission), got {ds[OBJECT].dtype}.")
    for name in (Y, X):
        if name not in ds.coords:
            _fail(f"{stage}: {OBJECT!r} needs a {name!r} coordinate in metres.")
    return ds


def validate_spectra(ds: Any, stage: str = "fit_xanes", minimum_energies: int = 1) -> xr.Dataset:
    """Validate absorption/phase stacks (DESIGN §1c)."""
    ds = require_dataset(ds, stage)
    require_variables(ds, (ABSORPTION,), stage, "Run ds.ptyxr.spectra() first, or build the stack by hand.")
    require_energy(ds, stage, minimum=minimum_energies)
    require_dims(ds[ABSORPTION], spec(ABSORPTION).dims, stage)
    if PHASE in ds:
        require_dims(ds[PHASE], spec(PHASE).dims, stage)
    for name in (ABSORPTION, PHASE):
        if name in ds and ds[name].dtype.kind not in "iuf":  # str/complex/object cannot be fitted
            _fail(f"{stage}: {name!r} must hold real numbers, got dtype {ds[name].dtype}.")
    if not _has_dask(ds[ABSORPTION]) and not np.isfinite(ds[ABSORPTION].values).any():
        _fail(f"{stage}: {ABSORPTION!r} is NaN everywhere; nothing to fit.")
    return ds


def validate_fit(ds: Any, stage: str = "chemical_state") -> xr.Dataset:
    """Validate XANES fit results (DESIGN §1d)."""
    ds = require_dataset(ds, stage)
    require_variables(ds, FIT_REQUIRED, stage, "Run ds.ptyxr.fit_xanes() first.")
    return ds


def validate_chemical_state(ds: Any, stage: str = "cluster") -> xr.Dataset:
    """Validate chemical-state maps (DESIGN §1e)."""
    ds = require_dataset(ds, stage)
    require_variables(ds, CHEMICAL_STATE_REQUIRED, stage, "Run ds.ptyxr.chemical_state() first.")
    return ds


def check_attrs(ds: xr.Dataset) -> list[str]:
    """Names of data variables/coords that lack ``units`` or ``long_name`` (empty = compliant)."""
    bad = []
    for name, da in ds.variables.items():
        if name in ds.dims and name not in SPECS:
            continue  # bare index dims such as scan
        if ATTR_UNITS not in da.attrs or (name in ds.data_vars and ATTR_LONG_NAME not in da.attrs):
            bad.append(str(name))
    return bad
