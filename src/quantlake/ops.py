"""Operations on versions: publish a lakehouse version, reproduce a past run (issue 6).

`register(subparsers)` adds the `publish` and `reproduce` commands to the CLI.
"""

from __future__ import annotations


def register(sub) -> None:
    """Add this module's sub-commands to the `quantlake` parser (none yet)."""
    return None
