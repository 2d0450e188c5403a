"""``ds.ptyxr.plot``: the figure and view functions bound to one Dataset (no state)."""

from __future__ import annotations

from typing import Any

import xarray as xr

from ptyxr import schema as s
from ptyxr.plotting import interactive, paper


class PlotMethods:
    """Paper figures and interactive views of a Dataset.

    ``ds.ptyxr.plot.figure1()``, ``.chemical_maps()`` (Fig. 2), ``.domains()`` (Fig. 3),
    ``.elbow()`` (Fig. S3), ``.stack()`` (energy slider), ``.scatter()`` (linked domain
    scatter), ``.pixel_explorer()`` and ``.domain_explorer()`` (ipywidgets explorers of
    :mod:`ptyxr.plotting.widgets`). Each method calls the function of the same purpose in
    :mod:`ptyxr.plotting.paper` / :mod:`ptyxr.plotting.interactive` with this Dataset
    and returns what it returns (a matplotlib Figure or a holoviews object).
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._obj = ds

    def figure1(self, **kwargs: Any) -> Any:
        """Paper Fig. 1 (absorption/phase images and region spectra); see :func:`ptyxr.plotting.paper.figure1`."""
        return paper.figure1(self._obj, **kwargs)

    def chemical_maps(self, **kwargs: Any) -> Any:
        """Paper Fig. 2 (edge energy, Re[N_e^eff]/N_V, PE/Δμt maps); see :func:`ptyxr.plotting.paper.figure2`."""
        return paper.figure2(self._obj, **kwargs)

    def domains(self, **kwargs: Any) -> Any:
        """Paper Fig. 3 (domain maps, feature densities, fractions); see :func:`ptyxr.plotting.paper.figure3`."""
        return paper.figure3(self._obj, **kwargs)

    def elbow(self, **elbow_kwargs: Any) -> Any:
        """Paper Fig. S3 (SSE vs k).

        When this Dataset is an elbow result (has attr ``suggested_k`` or no ``domain``
        features), it is plotted as is; otherwise ``ptyxr.domains.elbow(ds,
        **elbow_kwargs)`` is computed first.
        """
        ds = self._obj
        is_elbow = paper.SUGGESTED_K_ATTR in ds.attrs or not all(f in ds for f in s.DOMAIN_FEATURES)
        if not is_elbow:
            from ptyxr.domains import elbow

            ds = elbow(ds, **elbow_kwargs)  # type: ignore[assignment]  # the elbow curve (DataArray)
        elif elbow_kwargs:
            raise TypeError(f"elbow() got {sorted(elbow_kwargs)} but this Dataset is already an elbow result.")
        return paper.figure_s3(ds)

    def stack(self, variable: str = s.ABSORPTION, **kwargs: Any) -> Any:
        """Energy-slider image stack; see :func:`ptyxr.plotting.interactive.stack_view`."""
        return interactive.stack_view(self._obj, variable=variable, **kwargs)

    def scatter(self, **kwargs: Any) -> Any:
        """Feature scatter linked to the domain maps; see :func:`ptyxr.plotting.interactive.domain_scatter`."""
        return interactive.domain_scatter(self._obj, **kwargs)

    def pixel_explorer(self, **kwargs: Any) -> Any:
        """Clickable map with per-pixel spectra and fit; see :class:`ptyxr.plotting.widgets.PixelExplorer`."""
        from ptyxr.plotting.widgets import PixelExplorer

        return PixelExplorer(self._obj, **kwargs)

    def domain_explorer(self, **kwargs: Any) -> Any:
        """Cluster picker over the domain maps; see :class:`ptyxr.plotting.widgets.DomainExplorer`."""
        from ptyxr.plotting.widgets import DomainExplorer

        return DomainExplorer(self._obj, **kwargs)

    def resolution(self, **kwargs: Any) -> Any:
        """ESI Fig. S5 (PRTF/FRC curves, resolution per energy); see :func:`ptyxr.plotting.resolution.figure_s5`."""
        from ptyxr.plotting.resolution import figure_s5

        return figure_s5(self._obj, **kwargs)


def _show_target_signature(method: Any, target: Any) -> None:
    """Give ``method`` the signature (minus the Dataset) and docstring of the function it calls,
    so ``help(ds.ptyxr.plot.figure1)`` lists the real options rather than ``(**kwargs)``."""
    import inspect

    params = list(inspect.signature(target).parameters.values())[1:]
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = inspect.Signature(
        [this, *params], return_annotation=inspect.signature(target).return_annotation
    )
    method.__doc__ = f"{method.__doc__}\n\n{target.__doc__ or ''}"


for _method, _target in (
    (PlotMethods.figure1, paper.figure1),
    (PlotMethods.chemical_maps, paper.figure2),
    (PlotMethods.domains, paper.figure3),
    (PlotMethods.scatter, interactive.domain_scatter),
):
    _show_target_signature(_method, _target)
