"""quantlake: a versioned, certified crypto research lakehouse on git + DVC."""

__version__ = "0.1.0"
