"""Market-data sources: one small interface (`base.Source`), one file per source.

`make_source(data_params)` builds the source named by `data.source` from its own params
block (`data.sim`, `data.binance`, `data.archive`, `data.files`).
"""

from __future__ import annotations

import importlib

from ..contracts import ContractError
from .base import HostUnreachable, Market, Source, SourceError

# name -> (module, factory function); each factory takes the whole `data` params block.
_REGISTRY = {
    "sim": ("quantlake.sources.sim", "from_params"),
    "binance": ("quantlake.sources.binance", "from_params"),
    "archive": ("quantlake.sources.archive", "from_params"),
    "hybrid": ("quantlake.sources.archive", "hybrid_from_params"),
    "files": ("quantlake.sources.files", "from_params"),
}


def available_sources() -> list[str]:
    return sorted(_REGISTRY)


def make_source(data_params: dict) -> Source:
    name = data_params.get("source", "sim")
    if name not in _REGISTRY:
        raise ContractError(f"data.source: unknown source {name!r}; choose one of {available_sources()}")
    module_name, factory = _REGISTRY[name]
    module = importlib.import_module(module_name)
    return getattr(module, factory)(data_params)


__all__ = ["HostUnreachable", "Market", "Source", "SourceError", "make_source", "available_sources"]
