"""MAOS control plane: scheduling, consensus, checkpoints and access control over gRPC.

Plugin authors import the hook marker from here::

    from controlplane import hookimpl
"""

from controlplane.hookspecs import hookimpl
from controlplane.version import __version__

__all__ = ["__version__", "hookimpl"]
