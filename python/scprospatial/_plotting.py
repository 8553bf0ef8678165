"""matplotlib on the Agg backend, imported on first use, and figures to PNG bytes: shared by the report's
figures and those of spatial-stats."""
from __future__ import annotations

import io


def pyplot():
    """matplotlib.pyplot with the Agg backend (no display needed); imported here, not at package import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_png(fig) -> bytes:
    """The figure as PNG bytes (110 dpi, tight); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()
