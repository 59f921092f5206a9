"""matplotlib for the figures that evaluation and dataset statistics write: the eval extra, loaded on first
use and always on the file-only Agg backend (no display is needed or opened)."""

from __future__ import annotations

from types import ModuleType


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend; a missing eval extra is an ImportError naming it."""
    try:
        import matplotlib  # heavy optional dependency (the eval extra): imported on first use
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'dyadgen[eval]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional, as above; after use("Agg") so no display backend loads

    return plt
