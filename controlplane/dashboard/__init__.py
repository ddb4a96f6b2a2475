"""The web dashboard: static pages served beside the HTTP API on ``server.dashboard_port``."""

from controlplane.dashboard.server import DashboardServer, dashboard_app

__all__ = ["DashboardServer", "dashboard_app"]
