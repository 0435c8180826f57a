"""Matplotlib, the one way every figure is drawn: the report's plots and each study's own plot alike.

Below both the report and the studies, so a study draws its plot without importing the report that shows it.
matplotlib is imported lazily, with the Agg backend, so drawing works headless and the rest of the package never
pays for the import.
"""

from __future__ import annotations

import io

FONT = 10  # points; figures are at most ~13 in wide at 100 dpi, so text stays >= 10 px on a 1024 px page


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": FONT, "legend.fontsize": FONT, "xtick.labelsize": FONT,
                         "ytick.labelsize": FONT})
    return plt


def png(fig) -> bytes:
    """The figure as PNG bytes at 100 dpi, closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
