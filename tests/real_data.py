"""Where the tests find the real Binance recordings: one place decides.

`../shared/data/real/` beside the repository (this workplace and CI), or the folder named by
`$QUANTLAKE_REAL_DATA`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "real"
FREQTRADE = "binance_spot_1d_freqtrade_json"


def shared_dir() -> Path:
    env = os.environ.get("QUANTLAKE_REAL_DATA")
    return Path(env) if env else SHARED


def real_data_root() -> Path:
    """The folder of the real recordings; skips where it is absent (a user's machine), fails on CI."""
    folder = shared_dir()
    if (folder / FREQTRADE).is_dir():
        return folder
    if os.environ.get("CI"):
        pytest.fail(f"{folder} is missing on CI: the real-data tests must run")
    pytest.skip(f"real Binance recordings not found at {folder}")
