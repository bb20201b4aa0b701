"""Which airloop made a record: the package version and the code's commit, for MLflow tags and lineage."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from airloop.core.settings import project_root


def airloop_version() -> str:
    """The installed package's version (``unknown`` when it is not installed)."""
    try:
        return package_version("airloop")
    except PackageNotFoundError:
        return "unknown"


@cache
def code_version() -> str:
    """``AIRLOOP_CODE_VERSION`` (set it in images built without ``.git``), else the git commit of the checkout,
    suffixed ``-dirty`` when it has uncommitted changes, else ``unknown``."""
    if os.environ.get("AIRLOOP_CODE_VERSION"):
        return os.environ["AIRLOOP_CODE_VERSION"]
    # --no-optional-locks: a status check must never write the repository's index.
    git = ["git", "--no-optional-locks", "-C", str(project_root())]
    try:
        sha = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
