"""Reliability (issue 7): bad input fails loudly, nothing written is ever half a file, an
interrupted reconstruction resumes bit-exactly, and the numerics stay finite on degenerate data.

This file holds the cases not already covered elsewhere; docs/reliability.md maps every
guarantee to its test (many bad-input cases live in test_schema, test_io, test_reconstruct,
test_fit_stage, test_domains, test_cli and test_storage).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fixtures_chain as fc
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xarray.testing import assert_identical

import ptyxr
from ptyxr import schema as s
from ptyxr import simulate
from ptyxr.chemistry import chemical_state
from ptyxr.domains import cluster, combine_particles, elbow
from ptyxr.io.netcdf import open_dataset
from ptyxr.optics import real_space_pixel_size
from ptyxr.reconstruct import epie, grid
from ptyxr.reconstruct.api import reconstruct
from ptyxr.spectra import align, spectra
from ptyxr.xanes.fit import fit_xanes


@pytest.fixture(scope="module")
def raw(tiny):
    return tiny[0]


def finite(*arrays) -> bool:
    return all(np.isfinite(np.asarray(a)).all() for a in arrays)


# =========================================================================== bad input
def test_masked_nan_pixels_are_legal(raw):
    """NaN = masked pixel (DESIGN §1a): a few per frame must pass and reconstruct stays finite."""
    ds = raw.copy(deep=True)
    ds[s.INTENSITY][:, :, 3, 5] = np.nan
    ds[s.INTENSITY][2, 4, :4, :] = np.nan
    s.validate_raw(ds)
    out = reconstruct(ds, iterations=2, kkr=False, progress=False)
    assert finite(out[s.OBJECT], out[s.PROBE], out[s.FOURIER_ERROR])


def _set(ds, name, index, value):
    ds = ds.copy(deep=True)
    ds[name].values[index] = value
    return ds


def _del_attr(ds, name):
    ds = ds.copy()
    del ds.attrs[name]
    return ds


def _mask(ds, mask):
    return ds.assign({s.DETECTOR_MASK: ((s.DET_Y, s.DET_X), mask)})


N_TINY = 32
BAD_RAW = {
    # name: (mutation, words the message must contain)
    "missing detector_pixel_size": (lambda d: _del_attr(d, s.ATTR_DETECTOR_PIXEL_SIZE), "detector_pixel_size"),
    "missing detector_distance": (lambda d: _del_attr(d, s.ATTR_DETECTOR_DISTANCE), "detector_distance"),
    "pixel size not a number": (lambda d: d.assign_attrs({s.ATTR_DETECTOR_PIXEL_SIZE: "75um"}), "number"),
    "infinite position": (lambda d: _set(d, s.POSITION_X, (0, 3), np.inf), "inf"),
    "NaN energy": (lambda d: d.assign_coords({s.ENERGY: np.r_[d[s.ENERGY].values[:-1], np.nan]}), "non-finite"),
    "energies as strings": (lambda d: d.assign_coords({s.ENERGY: d[s.ENERGY].values.astype(str)}), "numbers"),
    "complex intensity": (lambda d: d.assign({s.INTENSITY: d[s.INTENSITY].astype(complex)}), "real numbers"),
    "text positions": (lambda d: d.assign({s.POSITION_Y: d[s.POSITION_Y].astype(str)}), "real numbers"),
    "mask not boolean": (lambda d: _mask(d, np.ones((N_TINY, N_TINY), int)), "boolean"),
    "mask hides every pixel": (lambda d: _mask(d, np.zeros((N_TINY, N_TINY), bool)), "no valid pixel"),
    "frame valid only under the mask": (
        # frame (1, 2) holds counts only on the diagonal, which the mask hides
        lambda d: _mask(_set(d, s.INTENSITY, (1, 2), np.where(np.eye(N_TINY) > 0, 7.0, np.nan)), np.eye(N_TINY) < 1),
        "no valid pixel",
    ),
    "no scan points": (lambda d: d.isel({s.SCAN: slice(0, 0)}), "finite position"),
    "no energies": (lambda d: d.isel({s.ENERGY: slice(0, 0)}), "at least 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_RAW))
def test_bad_raw_input_raises_schema_error_naming_it(raw, case):
    mutate, words = BAD_RAW[case]
    with pytest.raises(s.SchemaError, match=words):
        reconstruct(mutate(raw), iterations=1, progress=False)


@pytest.mark.parametrize(
    ("value", "words"),
    [(-5.0, "negative"), (np.inf, "inf"), (None, "no valid pixel or zero counts")],
)
def test_dask_intensities_are_checked_too(raw, value, words):
    """validate_raw skips value checks on dask arrays; reconstruct must still catch them."""
    ds = raw.copy(deep=True)
    if value is None:  # a whole frame emptied at a scan point that has a position
        ds[s.INTENSITY][3, 7] = 0.0
    else:
        ds[s.INTENSITY][3, 7, 4, 4] = value
    with pytest.raises(s.SchemaError, match=words):
        reconstruct(ds.chunk({s.ENERGY: 4}), iterations=1, progress=False)


@pytest.mark.parametrize(
    ("probe", "words"),
    [("nan", "NaN/inf"), ("zero", "zero everywhere")],
)
def test_bad_probe_guess(raw, probe, words):
    shape = (raw.sizes[s.ENERGY], N_TINY, N_TINY)
    values = np.ones(shape, np.complex64)
    if probe == "nan":
        values[0, 3, 3] = np.nan
    else:
        values[5] = 0
    with pytest.raises(s.SchemaError, match=words):
        reconstruct(raw.assign({s.PROBE_GUESS: s.variable(s.PROBE_GUESS, values)}), iterations=1, progress=False)


def test_resume_from_a_bad_file(raw, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nc"):
        reconstruct(raw, iterations=1, progress=False, resume_from=tmp_path / "nope.nc")
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"t": ("time", [1.0, 2.0])}).to_netcdf(foreign)
    with pytest.raises(s.SchemaError, match="not a ptyxr reconstruct checkpoint"):
        reconstruct(raw, iterations=1, progress=False, resume_from=foreign)
    good = tmp_path / "ck.nc"
    reconstruct(raw, iterations=1, kkr=False, progress=False, checkpoint=good)
    cut = tmp_path / "cut.nc"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(OSError, match="cut.nc"):
        reconstruct(raw, iterations=2, kkr=False, progress=False, resume_from=cut)


# ---------------------------------------------------- a netCDF from another tool, every stage
STAGES = {
    "reconstruct": (lambda d: reconstruct(d, progress=False), "intensity"),
    "align": (lambda d: align(d, progress=False), "object"),
    "spectra": (spectra, "object"),
    "fit_xanes": (lambda d: fit_xanes(d, progress=False), "absorption"),
    "chemical_state": (chemical_state, "b1"),
    "cluster": (cluster, "edge_energy"),
    "elbow": (lambda d: elbow(d, progress=False), "edge_energy"),
    "combine_particles": (lambda d: combine_particles([d]), "particle"),
}


@pytest.fixture(scope="module")
def foreign_dataset(tmp_path_factory):
    """A netCDF written by plain xarray (another tool): sensible data, none of ptyxr's names."""
    path = tmp_path_factory.mktemp("foreign") / "other-tool.nc"
    xr.Dataset(
        {"temperature": (("time", "sensor"), np.random.default_rng(0).normal(size=(5, 3)))},
        coords={"time": np.arange(5.0), "energy": ("time", np.linspace(5420, 5540, 5))},
        attrs={"source": "another tool"},
    ).to_netcdf(path)
    return open_dataset(path, load=True)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_foreign_netcdf_fed_to_each_stage(foreign_dataset, stage):
    call, missing = STAGES[stage]
    with pytest.raises(s.SchemaError, match=missing):
        call(foreign_dataset)


def test_all_nan_object_map(raw):
    rec = reconstruct(raw, iterations=1, kkr=False, progress=False)
    dead = rec.assign({s.OBJECT: rec[s.OBJECT] * np.nan})
    for stage in (lambda d: align(d, progress=False), spectra):
        with pytest.raises(s.SchemaError, match="no vacuum"):
            stage(dead)


# --------------------------------------------------------------- property-based validators
def _raw_small() -> xr.Dataset:
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            s.INTENSITY: s.variable(s.INTENSITY, rng.poisson(5.0, (3, 4, 6, 6)).astype(np.float32)),
            s.POSITION_Y: s.variable(s.POSITION_Y, rng.normal(0, 1e-7, (3, 4))),
            s.POSITION_X: s.variable(s.POSITION_X, rng.normal(0, 1e-7, (3, 4))),
            s.DETECTOR_MASK: s.variable(s.DETECTOR_MASK, np.ones((6, 6), bool)),
        },
        coords={s.ENERGY: s.energy_coord([5420.0, 5480.0, 5540.0])},
        attrs={s.ATTR_DETECTOR_DISTANCE: 1.0, s.ATTR_DETECTOR_PIXEL_SIZE: 75e-6, s.ATTR_PARTICLE: "P1"},
    )


def _reconstruction_small() -> xr.Dataset:
    obj = np.exp(-0.1 + 0.2j * np.random.default_rng(1).random((3, 5, 4))).astype(np.complex64)
    return xr.Dataset(
        {s.OBJECT: s.variable(s.OBJECT, obj)},
        coords={
            s.ENERGY: s.energy_coord([5420.0, 5480.0, 5540.0]),
            s.Y: s.length_coord(s.Y, np.arange(5) * 4e-8, 4e-8),
            s.X: s.length_coord(s.X, np.arange(4) * 4e-8, 4e-8),
        },
    )


def _spectra_small() -> xr.Dataset:
    ds = _reconstruction_small()
    return ds.assign({s.ABSORPTION: s.variable(s.ABSORPTION, -np.log(np.abs(ds[s.OBJECT].values)))})


def _fit_small() -> xr.Dataset:
    ds = fc.particle_dataset()
    return ds[[*s.FIT_PARAMETERS, s.FIT_VALID, s.SUCCESS, s.NOISE, s.PHASE, s.ABSORPTION]]


VALIDATORS = {
    "validate_raw": (s.validate_raw, _raw_small),
    "validate_reconstruction": (s.validate_reconstruction, _reconstruction_small),
    "validate_spectra": (s.validate_spectra, _spectra_small),
    "validate_fit": (s.validate_fit, _fit_small),
    "validate_chemical_state": (s.validate_chemical_state, fc.particle_dataset),
}
BASES = {name: make() for name, (_, make) in VALIDATORS.items()}

ATTR_VALUES = [None, -1.0, 0.0, np.nan, np.inf, "x", [1, 2], True]
DTYPES = [str, complex, bool, np.int16, object]


def _mutate(ds: xr.Dataset, data) -> xr.Dataset:
    """One random damage: drop, NaN/inf/negative values, dtype, dims, sizes, order, attrs."""
    kind = data.draw(
        st.sampled_from(
            ["drop", "value", "fill", "dtype", "transpose", "rename", "empty", "reverse", "attr", "delattr"]
        )
    )
    names = sorted(map(str, ds.variables))
    if kind in ("attr", "delattr"):
        keys = sorted({*ds.attrs, s.ATTR_DETECTOR_DISTANCE, s.ATTR_DETECTOR_PIXEL_SIZE})
        key = data.draw(st.sampled_from(keys))
        if kind == "delattr":
            return _del_attr(ds, key) if key in ds.attrs else ds
        return ds.assign_attrs({key: data.draw(st.sampled_from(ATTR_VALUES))})
    if not names:
        return ds
    name = data.draw(st.sampled_from(names))
    var = ds[name].variable
    if kind == "drop":
        return ds.drop_vars(name)
    if kind in ("value", "fill"):
        if var.dtype.kind not in "fc" or var.size == 0:
            return ds
        value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf, -3.0, 0.0]))
        values = np.array(var.values, copy=True)
        if kind == "fill":
            values[...] = value
        else:
            values.flat[data.draw(st.integers(0, values.size - 1))] = value
        return ds.assign({name: var.copy(data=values)}) if name in ds.data_vars else ds.assign_coords({name: values})
    if kind == "dtype":
        dtype = data.draw(st.sampled_from(DTYPES))
        new = var.copy(data=np.asarray(var.values).astype(dtype))
        return ds.assign({name: new}) if name in ds.data_vars else ds.assign_coords({name: new})
    if kind == "transpose" and name in ds.data_vars and var.ndim > 1:
        return ds.assign({name: ds[name].transpose(*var.dims[::-1])})
    if kind == "rename" and var.ndim:
        return ds.rename_dims({var.dims[0]: "mystery"})
    if kind == "empty" and var.ndim:
        return ds.isel({var.dims[0]: slice(0, 0)})
    if kind == "reverse" and var.ndim:
        return ds.isel({var.dims[0]: slice(None, None, -1)})
    return ds


@pytest.mark.parametrize("validator", sorted(VALIDATORS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_validators_raise_only_schema_error(validator, data):
    """Randomly damaged Datasets: a validator either accepts or raises SchemaError, nothing else."""
    check, _ = VALIDATORS[validator]
    ds = BASES[validator]
    for _ in range(data.draw(st.integers(1, 3))):
        try:
            ds = _mutate(ds, data)
        except Exception:  # a mutation xarray itself refuses is not a validator finding
            break
    try:
        check(ds)
    except s.SchemaError:
        pass


def test_validators_accept_their_bases():
    """Guards the property test: the undamaged bases are valid, so rejections come from damage."""
    for name, (check, _) in VALIDATORS.items():
        check(BASES[name])


# =========================================================================== nothing lost
def _half_write(self, text, *args, **kwargs):
    """Path.write_text that dies halfway (full disk, SIGKILL): half the text, then an error."""
    with open(self, "w") as f:
        f.write(text[: len(text) // 2])
    raise OSError("simulated crash while writing")


def _assert_intact(path: Path, old: bytes) -> None:
    assert path.read_bytes() == old
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_timings_json_is_atomic(tmp_path, monkeypatch):
    from ptyxr.pipeline import save_result

    result = fc.chain_result()
    save_result(result, tmp_path)
    timings = tmp_path / "timings.json"
    old = timings.read_bytes()
    result.timings["cluster"] = 123456.789  # new content that would differ
    monkeypatch.setattr(Path, "write_text", _half_write)
    with pytest.raises(OSError, match="simulated crash"):
        save_result(result, tmp_path, overwrite=True)
    _assert_intact(timings, old)


def test_demo_summary_is_atomic(tmp_path, monkeypatch):
    import ptyxr.pipeline as pipeline
    from ptyxr import cli

    monkeypatch.setattr(simulate, "paper_particles", lambda *a, **k: [])
    monkeypatch.setattr(simulate, "accuracy_report", lambda *a, **k: "accuracy: fine\n" * 50)
    monkeypatch.setattr(pipeline, "run_chain", lambda raws, options: fc.chain_result())
    monkeypatch.setattr(pipeline, "save_result", lambda *a, **k: [])
    monkeypatch.setattr(cli, "run_staged", lambda *a, **k: (fc.chain_result(), []))  # the demo saves stage by stage
    monkeypatch.setattr(cli, "_write_figures", lambda *a, **k: [])
    summary = tmp_path / "summary.txt"
    summary.write_text("previous run\n")
    monkeypatch.setattr(Path, "write_text", _half_write)
    with pytest.raises(OSError, match="simulated crash"):
        cli.demo("tiny", out=tmp_path, progress=False)
    _assert_intact(summary, b"previous run\n")


def test_figures_are_atomic(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from ptyxr.plotting import save_paper_figures

    fig1 = tmp_path / "fig1.png"
    fig1.write_bytes(b"\x89PNG previous figure")

    def dying_savefig(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"\x89PNG trunc")
        raise OSError("simulated crash while writing")

    monkeypatch.setattr(Figure, "savefig", dying_savefig)
    with pytest.raises(OSError, match="simulated crash"):
        save_paper_figures(fc.chain_result(), tmp_path)
    _assert_intact(fig1, b"\x89PNG previous figure")


# ---------------------------------------------------------------- checkpoint kill / resume
#: ePIE schedule of the kill test: KKR on (projections at 4 and 8), seeded position order.
KILL_RUN = dict(kkr=True, kkr_start=4, kkr_every=4, seed=5, checkpoint_every=2)
KILL_SCRIPT = """
import sys
from ptyxr import simulate
from ptyxr.reconstruct.api import reconstruct
raw, _ = simulate.demo_dataset("tiny", seed=0)
reconstruct(raw, iterations=10_000, checkpoint=sys.argv[1], progress=False, **{kw})
"""


def test_sigkilled_reconstruction_resumes_bit_exactly(raw, tmp_path):
    """SIGKILL a reconstruction right after its first checkpoint; resuming from that file to
    the same total iterations gives the uninterrupted run's object, probe and errors exactly."""
    total = 20
    ck = tmp_path / "state.nc"
    script = KILL_SCRIPT.format(kw=repr(KILL_RUN))
    proc = subprocess.Popen([sys.executable, "-c", script, str(ck)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120.0
        while not ck.exists():
            assert proc.poll() is None, f"reconstruction died before its first checkpoint: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL  # really killed mid-run (10 000 iterations requested)
    with xr.open_dataset(ck) as state:
        done = int(state.attrs[s.ATTR_ITERATIONS_DONE])
    assert 2 <= done < total  # killed within the first few checkpoints, before the reference length

    resumed = reconstruct(raw, iterations=total, resume_from=ck, progress=False, **KILL_RUN)
    full = reconstruct(raw, iterations=total, progress=False, **KILL_RUN)
    for name in (s.OBJECT, s.PROBE, s.FOURIER_ERROR, s.COVERAGE):
        assert_identical(resumed[name], full[name])


# ====================================================================== numerical robustness
def _kernel_inputs(raw, energies=(0, 15)):
    """Amplitudes, patch offsets, Fourier norms and a Gaussian probe for BatchedEPIE."""
    ds = raw.isel({s.ENERGY: list(energies)})
    n = ds.sizes[s.DET_Y]
    dx = real_space_pixel_size(
        ds[s.ENERGY].values, ds.attrs[s.ATTR_DETECTOR_DISTANCE], ds.attrs[s.ATTR_DETECTOR_PIXEL_SIZE], n
    )
    g = grid.common_grid(ds[s.POSITION_Y].values, ds[s.POSITION_X].values, float(np.min(dx)), n)
    intensity = ds[s.INTENSITY].values.astype(np.float32)
    c = np.arange(n) - n // 2
    probe = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * 4.0**2)).astype(np.complex64)
    probe = np.repeat(probe[None] * np.sqrt(np.nanmean(intensity.sum(axis=(-2, -1)))), len(energies), axis=0)
    return g, intensity, probe


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_epie_kernel_stays_finite_on_a_zero_frame(raw, engine):
    """reconstruct refuses zero-count frames (test_reconstruct: "zero counts"), but fed directly
    the kernel must neither divide by |Ψ| = 0 nor spread NaN: ΔF = amplitude − … stays finite."""
    g, intensity, probe = _kernel_inputs(raw)
    intensity[:, 5] = 0.0  # one scan point measured nothing at every energy
    intensity[1, 9, :, : N_TINY // 2] = 0.0  # and half of another frame
    amps = epie.prepare_amplitudes(intensity)
    obj = np.ones((2, *g.shape), np.complex64)
    solver = epie.BatchedEPIE(amps, g.offsets, epie.fourier_norm(intensity), engine=engine, fft_backend="scipy")
    order = np.arange(intensity.shape[1])
    errors = [solver.iteration(obj, probe, order, update_probe=True) for _ in range(4)]
    assert finite(obj, probe, errors)
    assert np.abs(probe).max() > 0  # not silently zeroed


def test_epie_kernel_with_a_probe_of_exact_zeros(raw):
    """A probe guess with exact-zero regions (half the array, and the padding around a pupil)."""
    g, intensity, probe = _kernel_inputs(raw)
    probe[:, :, : N_TINY // 2] = 0
    probe[:, :3, :] = 0
    amps = epie.prepare_amplitudes(intensity)
    obj = np.ones((2, *g.shape), np.complex64)
    solver = epie.BatchedEPIE(amps, g.offsets, epie.fourier_norm(intensity), engine="numpy", fft_backend="scipy")
    for _ in range(4):
        err = solver.iteration(obj, probe, np.arange(intensity.shape[1]), update_probe=True)
    assert finite(obj, probe, err)


@pytest.mark.parametrize("scale", [1e-12, 1.0])
def test_reconstruct_with_near_zero_probe_regions(raw, scale):
    """Through the stage: a probe guess zero on one half and, at scale 1e-12, nearly zero
    everywhere (ePIE's step 1/max|P|² is then huge) keeps object and probe finite."""
    n = N_TINY
    c = np.arange(n) - n // 2
    gauss = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * 4.0**2)) * (c[None, :] >= 0)
    photons = float(np.nanmean(raw[s.INTENSITY].sum((s.DET_Y, s.DET_X))))
    guess = np.repeat((gauss * np.sqrt(photons / (gauss**2).sum()) * scale)[None], raw.sizes[s.ENERGY], axis=0)
    ds = raw.assign({s.PROBE_GUESS: s.variable(s.PROBE_GUESS, guess.astype(np.complex64))})
    out = reconstruct(ds, iterations=4, kkr=False, progress=False)
    assert finite(out[s.OBJECT], out[s.PROBE], out[s.FOURIER_ERROR])


def test_reconstruct_with_90_percent_of_the_detector_masked(raw):
    mask = np.random.default_rng(0).random((N_TINY, N_TINY)) > 0.9  # 10 % valid pixels
    ds = raw.assign({s.DETECTOR_MASK: s.variable(s.DETECTOR_MASK, mask)})
    out = reconstruct(ds, iterations=6, kkr=True, kkr_start=2, kkr_every=2, progress=False)
    assert finite(out[s.OBJECT], out[s.PROBE], out[s.FOURIER_ERROR])


# ------------------------------------------------------------------ fits on edge-less spectra
def _spectra_cases() -> tuple[xr.Dataset, list[str]]:
    """One pixel per case on the fixtures' paper-like grid (4 pre-edge points, 16 energies)."""
    e = fc.ENERGIES
    rng = np.random.default_rng(1)
    edge = fc.eq1(e, 0.1, 0.6, 5480.0, 3.0, 0.1, 5468.0, 1.5, 0.2, 5492.0, 4.0)
    cases = {
        "flat, noise-free": np.full(e.size, 0.3),
        "flat, noisy": 0.3 + 0.01 * rng.standard_normal(e.size),
        "pure noise": 0.01 * rng.standard_normal(e.size),
        "straight slope": 0.1 + 0.002 * (e - e[0]),
        "slope, noisy": 0.1 + 0.002 * (e - e[0]) + 0.01 * rng.standard_normal(e.size),
        "white line only": 0.1 + 0.3 / (1 + ((e - 5480.0) / 3.0) ** 2) + 0.005 * rng.standard_normal(e.size),
        "control: noisy edge": edge + 0.01 * rng.standard_normal(e.size),
    }
    names = list(cases)
    values = np.stack([cases[n] for n in names], axis=-1)[:, None, :]
    ds = xr.Dataset(
        coords={
            s.ENERGY: s.energy_coord(e),
            s.Y: s.length_coord(s.Y, [0.0], 4e-8),
            s.X: s.length_coord(s.X, np.arange(len(names)) * 4e-8, 4e-8),
        }
    )
    ds[s.ABSORPTION] = s.variable(s.ABSORPTION, values)
    ds[s.PHASE] = s.variable(s.PHASE, -0.3 * np.ones_like(values))
    ds[s.MATERIAL] = s.variable(s.MATERIAL, np.ones((1, len(names)), bool))
    return ds, names


@pytest.mark.parametrize("method", ["batch", "lmfit"])
def test_edgeless_spectra_are_flagged_not_fitted_silently(method):
    """No edge (flat, noise, slope, a peak alone) → fit_valid False, so chemical_state gives NaN
    there; the noisy edge next to them (positive control) stays valid."""
    ds, names = _spectra_cases()
    fitted = fit_xanes(ds, method=method, progress=False)
    valid = dict(zip(names, fitted[s.FIT_VALID].values[0].tolist(), strict=True))
    assert valid.pop("control: noisy edge")
    assert not any(valid.values()), valid
    chem = chemical_state(fitted)
    ratio = chem[s.ELECTRONS_PER_VANADIUM].values[0]
    assert np.isnan(ratio[:-1]).all() and np.isfinite(ratio[-1])


def test_accessor_reaches_the_guarded_stages(raw):
    """The .ptyxr accessor runs the same validation (bad input through the accessor fails too)."""
    with pytest.raises(s.SchemaError, match="negative"):
        raw.assign({s.INTENSITY: raw[s.INTENSITY] - 1e6}).ptyxr.reconstruct(iterations=1, progress=False)
    assert ptyxr.SchemaError is s.SchemaError
