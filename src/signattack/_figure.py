"""Figures that show themselves in a notebook, without pyplot.

The package draws on a bare matplotlib ``Figure`` (no pyplot, so no window opens and no
figure is kept alive by a global registry). A bare figure shows in Jupyter only as
``<Figure size ... with 3 Axes>`` unless the inline backend is set up; the figures here add
``_repr_png_``, which IPython calls for the last value of a cell, so that they show as images
by themselves and are still ``Figure`` objects to save or change.
"""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


NOTEBOOK_DPI = 100
"""The resolution of the image a notebook shows."""


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure of ``size`` inches with constrained layout, shown as a PNG in a notebook.

    Raises:
        ImportError: matplotlib is not installed (it comes with the ``demo`` extra).
    """
    try:
        kind = _shown_figure()
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('figures need matplotlib: pip install "signattack[demo]"') from error
    figure: Figure = kind(figsize=size, layout="constrained")
    return figure


@functools.cache
def _shown_figure() -> type[Figure]:
    from matplotlib.figure import Figure

    class ShownFigure(Figure):
        """A matplotlib ``Figure`` that a notebook shows as its PNG."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=NOTEBOOK_DPI)
            return buffer.getvalue()

    return ShownFigure
