"""Old dotted paths of the instance plug-ins, kept importable for one release."""

from __future__ import annotations

import warnings


def warn_moved(old: str, new: str) -> None:
    """Says, once per process, that a dagster.yaml names a plug-in by its old path.

    FutureWarning, not DeprecationWarning: Python hides the latter outside `__main__`, and the
    person who must edit dagster.yaml reads the daemon's and the webserver's output."""
    warnings.warn(
        f"{old} moved to {new}: write `module: {new}` in dagster.yaml; the old path is "
        "removed in the next release",
        FutureWarning,
        stacklevel=3,
    )
