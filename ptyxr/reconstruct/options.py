"""Options of the ``reconstruct`` stage that travel together, and the KKR schedule.

``reconstruct`` resolves its keyword arguments once into a frozen :class:`RunOptions`
(with the groups :class:`KKROptions`, :class:`ProbeOptions`, :class:`FluxOptions`,
:class:`PositionOptions`) and hands that object unchanged to each particle's run; the
provenance record and the checkpoint settings are read off it (:meth:`RunOptions.record`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ptyxr.checks import RECENTRE_MODES
from ptyxr.reconstruct import positions as _pos

#: KKR needs a spectrum: at least this many energies.
KKR_MIN_ENERGIES = 3
#: Default first KKR iteration and interval as fractions of ``iterations`` (paper: 500 and 50 of 800).
KKR_START_FRACTION = 5 / 8
KKR_EVERY_FRACTION = 1 / 16


def kkr_schedule(iterations: int, kkr_start: int | None = None, kkr_every: int | None = None) -> list[int]:
    """Iteration numbers (1-based, counted after the iteration) at which KKR is applied.

    ``kkr_start, kkr_start + kkr_every, …`` up to ``iterations``, plus ``iterations``
    itself when it is not on the schedule: the run always ends on a KKR projection, for
    every ``iterations`` ≥ 1. Defaults follow the iteration count with the paper's
    proportions (500, 550, …, 800 of 800): ``kkr_start`` = round(5/8·iterations),
    ``kkr_every`` = round(iterations/16), both at least 1. An explicit ``kkr_start`` beyond
    ``iterations`` leaves only the final projection (:func:`reconstruct` warns).
    """
    iterations = int(iterations)
    if iterations < 1:
        return []
    if kkr_start is None:
        kkr_start = round(KKR_START_FRACTION * iterations)
    if kkr_every is None:
        kkr_every = round(KKR_EVERY_FRACTION * iterations)
    start = min(max(int(kkr_start), 1), iterations)
    every = max(int(kkr_every), 1)
    sched = list(range(start, iterations + 1, every))
    if sched[-1] != iterations:
        sched.append(iterations)
    return sched


@dataclass(frozen=True)
class KKROptions:
    """The Kramers–Kronig constraint of one run (``reconstruct``'s ``kkr*`` arguments).

    Attributes
    ----------
    enabled : bool
        KKR projections run: asked for (``kkr``) and the scan has ≥ :data:`KKR_MIN_ENERGIES`
        energies.
    start, every : int or None
        ``kkr_start`` and ``kkr_every`` as given (None: 5/8 and 1/16 of the iterations);
        :meth:`schedule` resolves them.
    weight : float
        ``kkr_weight``: blend toward the KK phase (1 = replace).
    element, table : str
        ``kkr_element``/``kkr_table``: resonant element and f″ table that extend μt outside
        the energy window (:func:`ptyxr.reconstruct.kkr.kkr_project`).
    skip_last : bool
        ``kkr_skip_last``: the highest energy keeps its own phase (``kkr_project``'s
        ``skip_last``; True, the default since session 13; False projects every energy).
    """

    enabled: bool = True
    start: int | None = None
    every: int | None = None
    weight: float = 1.0
    element: str = "V"
    table: str = "chantler"
    skip_last: bool = True

    def schedule(self, iterations: int) -> list[int]:
        """Iterations after which KKR projects (:func:`kkr_schedule`; empty when not enabled)."""
        return kkr_schedule(iterations, self.start, self.every) if self.enabled else []

    def projection(self) -> dict[str, Any]:
        """Keyword arguments of :func:`ptyxr.reconstruct.kkr.kkr_project` besides the weight.

        ``skip_last`` appears only when on and KKR runs: with it off (or KKR off) the dict
        (recorded as ``kkr_options``) is that of earlier versions, which always projected every
        energy — their checkpoints, which lack the key, resume a ``kkr_skip_last=False`` run
        (and a ``kkr=False`` one), and are refused by a default run.
        """
        out: dict[str, Any] = {"element": self.element, "table": self.table}
        if self.skip_last and self.enabled:
            out["skip_last"] = True
        return out


@dataclass(frozen=True)
class ProbeOptions:
    """How the probe is modelled and updated.

    Attributes
    ----------
    modes : int
        ``probe_modes``: number of mutually incoherent probe modes (1 = one coherent probe).
    update : bool
        ``update_probe``: update the probe at all.
    update_start : int
        ``probe_update_start``: first iteration (0-based) with probe updates.
    recentre : {"relative", "centre", "off"}
        ``recentre_probe`` (:mod:`ptyxr.reconstruct.centring`): ``"relative"`` co-registers
        the energies' probe cores onto their mean centre before each KKR projection and puts
        every core on pixel N//2 for the output; ``"centre"`` moves each probe's centre of
        mass onto N//2 after every probe-updating iteration (object alike); ``"off"``: neither.
    """

    modes: int = 1
    update: bool = True
    update_start: int = 0
    recentre: str = RECENTRE_MODES[0]  # "relative"

    def updates_at(self, iteration: int) -> bool:
        """Whether 0-based ``iteration`` updates the probe."""
        return self.update and iteration >= self.update_start


@dataclass(frozen=True)
class FluxOptions:
    """Incident-flux handling (:mod:`ptyxr.reconstruct.flux`).

    Attributes
    ----------
    use_monitor : bool
        ``use_monitor``: divide every frame by its relative monitor flux (when the scan has one).
    refine : bool
        ``refine_flux``: refine each frame's relative flux during the iterations.
    """

    use_monitor: bool = True
    refine: bool = False


@dataclass(frozen=True)
class PositionOptions:
    """Probe position refinement (:mod:`ptyxr.reconstruct.positions`).

    Attributes
    ----------
    enabled : bool
        ``position_correction``.
    start : int or None
        ``position_correction_start`` as given (None: 30 % of the iterations).
    every : int
        ``position_correction_every``: iterations between refinement passes.
    max_shift : float
        ``position_max_shift``: largest total correction of one position [pixels].
    """

    enabled: bool = False
    start: int | None = None
    every: int = _pos.EVERY
    max_shift: float = _pos.MAX_SHIFT

    def settings(self, iterations: int) -> dict[str, Any] | None:
        """The refiner's settings (:func:`ptyxr.reconstruct.positions.options`), None when off."""
        return _pos.options(iterations, self.start, self.every, self.max_shift) if self.enabled else None

    @property
    def margin(self) -> int:
        """Grid padding [pixels] that keeps refined patches inside (0 when off)."""
        return _pos.margin_pixels(self.max_shift) if self.enabled else 0


@dataclass(frozen=True)
class RunOptions:
    """Everything that determines one particle's reconstruction, resolved once by ``reconstruct``.

    Built from :func:`ptyxr.reconstruct.reconstruct`'s keyword arguments (defaults resolved,
    types normalised) and passed unchanged to the per-particle run
    (:func:`ptyxr.reconstruct.particle.reconstruct_particle`); :meth:`record` gives the
    provenance parameters and, through :func:`ptyxr.reconstruct.checkpoint.settings`, the
    checkpoint settings (their keys are those of earlier versions, so their checkpoints resume).

    Attributes
    ----------
    iterations : int
        ePIE iterations.
    alpha, beta : float
        Object and probe step sizes.
    pixel_size : float
        Common real-space pixel [m].
    coverage_threshold : float
        ``coverage`` threshold (fraction of the summed probe intensity's maximum).
    seed : int
        Seed of the random position order.
    kkr, probe, flux, positions : KKROptions, ProbeOptions, FluxOptions, PositionOptions
        The option groups.
    progress : bool
        Show a progress bar (not recorded: it does not change the result).
    checkpoint_every : int
        Iterations between checkpoints.
    engine, fft_backend : str
        Kernel implementation and FFT backend (``"auto"`` resolved by the solver).
    interpolation : int
        Detector resampling order with ``native_grids=False``.
    native_grids : bool
        Iterate each energy on its own native pixel.
    pin_scale : bool
        Pin the O·P scale after probe updates.
    memory_limit : int or None
        Most bytes of diffraction data in memory [bytes] (parsed), None = all.
    algorithm : str
        ``"epie"`` or ``"mpie"``.
    object_regularization, momentum : float
        mPIE's rPIE weight and object momentum (resolved; 1 and 0 for ePIE).
    """

    iterations: int
    pixel_size: float
    alpha: float = 1.0
    beta: float = 0.25
    coverage_threshold: float = 0.1
    seed: int = 0
    kkr: KKROptions = field(default_factory=KKROptions)
    probe: ProbeOptions = field(default_factory=ProbeOptions)
    flux: FluxOptions = field(default_factory=FluxOptions)
    positions: PositionOptions = field(default_factory=PositionOptions)
    progress: bool = True
    checkpoint_every: int = 50
    engine: str = "auto"
    fft_backend: str = "auto"
    interpolation: int = 1
    native_grids: bool = True
    pin_scale: bool = True
    memory_limit: int | None = None
    algorithm: str = "epie"
    object_regularization: float = 1.0
    momentum: float = 0.0

    def record(self) -> dict[str, Any]:
        """The provenance parameters of the run, keyed by ``reconstruct``'s argument names.

        The keys and their order are those of earlier versions' records (``kkr`` is whether KKR
        ran, ``kkr_options`` its element and table, ``position_options`` the refiner's
        settings); ``progress`` and ``algorithm`` are left to the stage.
        """
        return {
            "iterations": self.iterations,
            "alpha": self.alpha,
            "beta": self.beta,
            "kkr": self.kkr.enabled,
            "kkr_start": self.kkr.start,
            "kkr_every": self.kkr.every,
            "kkr_weight": self.kkr.weight,
            "update_probe": self.probe.update,
            "probe_update_start": self.probe.update_start,
            "pixel_size": self.pixel_size,
            "coverage_threshold": self.coverage_threshold,
            "seed": self.seed,
            "checkpoint_every": self.checkpoint_every,
            "engine": self.engine,
            "fft_backend": self.fft_backend,
            "interpolation": self.interpolation,
            "native_grids": self.native_grids,
            "recentre_probe": self.probe.recentre,
            "pin_scale": self.pin_scale,
            "probe_modes": self.probe.modes,
            "kkr_options": self.kkr.projection(),
            "use_monitor": self.flux.use_monitor,
            "refine_flux": self.flux.refine,
            "position_correction": self.positions.enabled,
            "position_options": self.positions.settings(self.iterations),
            "memory_limit": self.memory_limit,
            "object_regularization": self.object_regularization,
            "momentum": self.momentum,
        }
