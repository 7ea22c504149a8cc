"""Market-data sources: one small interface (`base.Source`), one file per source.

`make_source(data)` builds the source named by `data.source` from its own params
section (`data.sim`, `data.binance`, `data.archive`, `data.files`).
"""

from __future__ import annotations

import importlib

from .base import HostUnreachable, Market, Source, SourceError

# name -> (module, factory function); each factory takes the typed `data` section.
_REGISTRY = {
    "sim": ("quantlake.sources.sim", "from_params"),
    "binance": ("quantlake.sources.binance", "from_params"),
    "archive": ("quantlake.sources.archive", "from_params"),
    "hybrid": ("quantlake.sources.archive", "hybrid_from_params"),
    "files": ("quantlake.sources.files", "from_params"),
}


def available_sources() -> list[str]:
    return sorted(_REGISTRY)


def make_source(data) -> Source:
    """The source `data.source` names, built from the typed `data` section
    (`quantlake.params.DataParams`, or a plain mapping parsed into one)."""
    from ..params import DataParams
    from ..params_base import coerce_section

    data = coerce_section(DataParams, data)
    module_name, factory = _REGISTRY[data.source]  # DataParams checked the name
    module = importlib.import_module(module_name)
    return getattr(module, factory)(data)


__all__ = ["HostUnreachable", "Market", "Source", "SourceError", "make_source", "available_sources"]
