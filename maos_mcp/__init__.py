"""MAOS as an MCP server: tools and resources for MCP clients (Claude Code and others).

``maos mcp`` serves it over stdio; ``maos mcp --http`` over streamable HTTP, and
:class:`maos_mcp.server.HttpTransport` is the ASGI app another HTTP server can mount.
It needs the ``mcp`` package (``pip install "maos[mcp]"``); docs/mcp.md describes the tools.
"""
