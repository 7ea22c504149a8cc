"""Where every alpha figure comes from: the alpha params, the code version and the run id.

`run_id = sha256(snapshot_id, canonical JSON of the alpha params, code version)`, where the
alpha params are the checked sections of the params model with every default filled in (so
leaving a key out and writing its default give the same run id), and the code version is the package version plus the sha256 of the alpha modules' sources, so that a
change to the research code changes the run id even when the version number does not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import __version__
from ..params import Params

ALPHA_SECTIONS = ("selection", "synthesis", "optimization", "backtest")
_ALPHA_DIR = Path(__file__).resolve().parent


def alpha_params(params: Params, sections: tuple[str, ...] = ALPHA_SECTIONS) -> dict:
    return {name: params.plain(name, results_only=True) for name in sections}


def params_hash(params: dict, sections: tuple[str, ...] = ALPHA_SECTIONS) -> str:
    """sha256 of the canonical JSON of the alpha params sections (what `-S key=value` changes)."""
    payload = json.dumps(alpha_params(params, sections), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def code_version() -> str:
    h = hashlib.sha256()
    for path in sorted(_ALPHA_DIR.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{__version__}+{h.hexdigest()[:12]}"


def run_id(snapshot_id: str, params: Params, sections: tuple[str, ...] = ALPHA_SECTIONS) -> str:
    payload = json.dumps(
        {"snapshot_id": snapshot_id, "params": alpha_params(params, sections), "code": code_version()},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def stamp(snapshot_id: str, params: Params, sections: tuple[str, ...] = ALPHA_SECTIONS) -> dict:
    """The provenance fields every alpha output carries.

    `sections` are the params sections the output depends on (directly or through its inputs):
    exactly those that make DVC re-run the stage, so a stored run id is never stale.
    """
    return {
        "snapshot_id": snapshot_id,
        "run_id": run_id(snapshot_id, params, sections),
        "params_sections": list(sections),
        "code_version": code_version(),
    }
