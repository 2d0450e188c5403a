"""Options of the ``reconstruct`` stage that travel together, and the KKR schedule."""

from __future__ import annotations

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
