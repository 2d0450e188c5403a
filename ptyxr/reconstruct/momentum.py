"""mPIE (Maiden, Johnson & Li, Optica 4, 736 (2017)): rPIE's object step plus momentum.

``reconstruct(algorithm="mpie")`` runs the fused engine with rPIE's regularised object step
(:class:`ptyxr.reconstruct.epie.BatchedEPIE` ``regularization`` a < 1: per pixel
α·P*/((1 − a)|P|² + a·max|P|²), a larger step where the probe is weak than ePIE's
α·P*/max|P|²) and, between iterations, a heavy-ball momentum on the object:

    v ← η·v + (O_after − O_before),    O_after ← O_after + η·v

per energy, where O_before/O_after is the object before/after one iteration's sweep over all
positions (the paper applies it every T positions; one fused iteration is T = all positions,
the cheapest place outside the compiled kernel). Only the kernel's own change enters v: the
gauge steps that act on the object between iterations are not "progress" and move v with the
object instead — :func:`ptyxr.reconstruct.epie.recentre` shifts O by a sub-pixel vector (v is
shifted alike), :func:`ptyxr.reconstruct.epie.pin_scale` divides O by c (v too). mPIE steps run
up to the first KKR projection (:func:`mpie_end`); the KKR phase then takes ePIE steps, so
momentum never carries a KKR phase jump forward (:meth:`ObjectMomentum.reset` is kept for it).
The velocity is part of the solver state: checkpoints save it, so a resumed run equals the
uninterrupted one exactly.
"""

from __future__ import annotations

import numpy as np

from ptyxr.reconstruct import epie as _epie

#: Algorithms of :func:`ptyxr.reconstruct.reconstruct`.
ALGORITHMS = ("epie", "mpie")
#: mPIE defaults, chosen by measured convergence (docs/design-notes/s11-mpie.md).
MPIE_REGULARIZATION = 0.75
MPIE_MOMENTUM = 0.85
#: Name of the velocity in checkpoints.
VELOCITY = "momentum_velocity"


def resolve(algorithm: str, object_regularization: float | None, momentum: float | None) -> tuple[float, float]:
    """``(object_regularization, momentum)`` of ``algorithm`` with its defaults filled in.

    ``"epie"`` is a = 1, η = 0 (and refuses other values: they would silently make it mPIE);
    ``"mpie"`` defaults to :data:`MPIE_REGULARIZATION` and :data:`MPIE_MOMENTUM`.
    """
    from ptyxr.checks import choice, real

    where = "reconstruct"
    choice("algorithm", algorithm, ALGORITHMS, where)
    if algorithm == "epie":
        for name, value in (("object_regularization", object_regularization), ("momentum", momentum)):
            if value is not None:
                from ptyxr.schema import SchemaError

                raise SchemaError(
                    f"{where}: {name}={value!r} applies to algorithm='mpie' only; ePIE is object_regularization=1, "
                    "momentum=0. Pass algorithm='mpie' or leave it None."
                )
        return 1.0, 0.0
    reg = MPIE_REGULARIZATION if object_regularization is None else object_regularization
    eta = MPIE_MOMENTUM if momentum is None else momentum
    # a = 0 would divide by |P|² = 0 outside the probe
    reg = real("object_regularization", reg, where, positive=True, maximum=1.0)
    eta = real("momentum", eta, where, minimum=0.0, maximum=0.99)
    return float(reg), float(eta)


def mpie_end(algorithm: str, kkr_iterations: list[int], iterations: int) -> int:
    """Iterations (0-based end) that take mPIE steps: up to the first KKR projection.

    The KKR phase after it takes ePIE steps. Measured on a paper particle (100 iterations,
    KKR from 62): mPIE throughout left the absorption NRMSE at 0.017 where ePIE's 800
    iterations reach 0.011 (the phase was as good); its larger steps fit photon noise into
    the amplitude. Without KKR, or for ``"epie"``, the whole run (0 for ePIE).
    """
    if algorithm == "epie":
        return 0
    return kkr_iterations[0] if kkr_iterations else iterations


class ObjectMomentum:
    """Heavy-ball momentum on the object stack between iterations (see the module docstring).

    Parameters
    ----------
    shape : tuple of int
        Object stack shape (n_energy, ny, nx).
    field : ndarray of bool, shape (n_energy, ny, nx)
        Where each energy's object is covered (outside it stays exactly 1 + 0j).
    friction : float
        η: velocity memory and step, in [0, 1).
    """

    def __init__(self, shape: tuple[int, ...], field: np.ndarray, friction: float) -> None:
        self.eta = np.float32(friction)
        self.field = field
        self.velocity = np.zeros(shape, dtype=np.complex64)
        self._before = np.empty(shape, dtype=np.complex64)

    def before(self, obj: np.ndarray) -> None:
        """Remember the object before the iteration's sweep."""
        np.copyto(self._before, obj)

    def after(self, obj: np.ndarray) -> None:
        """v ← η v + (O − O_before); O ← O + η v inside the covered field (in place)."""
        np.subtract(obj, self._before, out=self._before)  # the sweep's change
        self.velocity *= self.eta
        self.velocity += self._before
        self.velocity[~self.field] = 0
        obj += self.eta * self.velocity

    def shift(self, shifts: np.ndarray) -> None:
        """Move v with the object after :func:`~ptyxr.reconstruct.epie.recentre` (shifts (n_energy, 2) [px])."""
        for e in np.flatnonzero(np.any(shifts != 0, axis=1)):
            self.velocity[e] = _epie.fourier_shift(self.velocity[e], tuple(shifts[e]))
            self.velocity[e][~self.field[e]] = 0

    def scale(self, factors: np.ndarray) -> None:
        """Follow :func:`~ptyxr.reconstruct.epie.pin_scale` (O → O/c): v → v/c."""
        for e in np.flatnonzero(factors != 1):
            self.velocity[e] *= np.complex64(1.0 / factors[e])

    def reset(self) -> None:
        """Forget the velocity (after a KKR projection)."""
        self.velocity[...] = 0
