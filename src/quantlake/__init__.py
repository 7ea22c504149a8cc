"""quantlake: a versioned, certified crypto research lakehouse on git + DVC."""

__version__ = "0.1.0"

__all__ = ["Lakehouse", "open_lakehouse", "__version__"]


def __getattr__(name: str):
    # Lazy: `import quantlake` stays cheap; pandas and pyarrow load on first use of the API.
    if name in ("Lakehouse", "open_lakehouse"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'quantlake' has no attribute {name!r}")
