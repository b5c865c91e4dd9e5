"""The one place that touches plotly's private FigureWidget state: keeping late views up to date.

    >>> sync_late_views(figure)   # after drawing, so a page reload or a second tab sees the curves

Why: a plotly (>= 6, anywidget-based) `FigureWidget` sends each update to the open views as a
one-shot message. A view that attaches later (a page reload, a second browser tab, Voila) starts
from the widget's synced `_widget_data` / `_widget_layout` traits instead, and plotly refreshes
those only inside `FigureWidget._repr_mimebundle_`. A figure nested in an ipywidgets VBox is never
displayed through that method, so without this its late views would show the curves as they were
when the dashboard was first displayed. Copying `_data` and `_layout_obj._props` into the synced
traits is exactly what `_repr_mimebundle_` does (plotly/basewidget.py, plotly 6.x). If plotly
renames these attributes, this function is the only thing to update.
"""

from __future__ import annotations

import copy
from typing import Any


def sync_late_views(figure: Any) -> None:
    """Refresh the state a newly attached view of `figure` (a go.FigureWidget) starts from."""
    figure._widget_data = copy.deepcopy(figure._data)
    figure._widget_layout = copy.deepcopy(figure._layout_obj._props)
