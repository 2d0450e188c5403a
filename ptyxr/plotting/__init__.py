"""Paper figures (matplotlib) and interactive views (hvplot/holoviews, imported lazily).

``ptyxr.plotting.figure1`` … ``figure_s3`` reproduce the paper's figures from Datasets;
``stack_view`` and ``domain_scatter`` build interactive holoviews objects;
``ds.ptyxr.plot`` exposes both as methods of a Dataset.
"""

from __future__ import annotations

from ptyxr.plotting.interactive import domain_scatter, domain_table, stack_view
from ptyxr.plotting.paper import (
    CLUSTER_COLORS,
    cluster_color,
    figure1,
    figure2,
    figure3,
    figure_s3,
    save_paper_figures,
)

__all__ = [
    "CLUSTER_COLORS",
    "cluster_color",
    "domain_scatter",
    "domain_table",
    "figure1",
    "figure2",
    "figure3",
    "figure_s3",
    "save_paper_figures",
    "stack_view",
]
