"""Anthropic's server-side tools: named in the request, run by the Messages API.

* ``web_search`` (``web_search_20250305``): searches, answered in ``web_search_tool_result``
  blocks; the text that uses them carries ``web_search_result_location`` citations. Billed per
  search (counted in ``usage.server_tool_use.web_search_requests``).
* ``web_fetch`` (``web_fetch_20250910``): fetches a page or PDF the user or a search named
  (``web_fetch_tool_result``), with citations on.
* ``code_execution`` (``code_execution_20250825``): a sandbox on the API's side where the model
  runs bash and edits files (``bash_code_execution_tool_result`` & co.).

The beta headers these versions were introduced under are sent along (the API accepts them once a
tool is generally available).
"""

from __future__ import annotations

from typing import Any

from maos_plugins.claude.tools.settings import CODE_EXECUTION, WEB_FETCH, WEB_SEARCH, ToolSettings

WEB_SEARCH_TYPE = "web_search_20250305"
WEB_FETCH_TYPE = "web_fetch_20250910"
CODE_EXECUTION_TYPE = "code_execution_20250825"
BETAS = {WEB_FETCH_TYPE: "web-fetch-2025-09-10", CODE_EXECUTION_TYPE: "code-execution-2025-08-25"}
#: Most tokens of one fetched page put in the model's context.
WEB_FETCH_MAX_CONTENT_TOKENS = 20_000


def _domains(settings: ToolSettings) -> dict[str, Any]:
    # The API takes one list or the other, never both: an allow-list makes a block-list moot.
    if settings.allowed_domains:
        return {"allowed_domains": list(settings.allowed_domains)}
    if settings.blocked_domains:
        return {"blocked_domains": list(settings.blocked_domains)}
    return {}


def server_tools(settings: ToolSettings) -> list[dict[str, Any]]:
    """The server tool definitions of an agent's request (empty when it offers none)."""
    tools: list[dict[str, Any]] = []
    if settings.offers(WEB_SEARCH):
        tools.append(
            {
                "type": WEB_SEARCH_TYPE,
                "name": "web_search",
                "max_uses": settings.web_search_max_uses,
                **_domains(settings),
            }
        )
    if settings.offers(WEB_FETCH):
        tools.append(
            {
                "type": WEB_FETCH_TYPE,
                "name": "web_fetch",
                "max_uses": settings.web_fetch_max_uses,
                "citations": {"enabled": True},
                "max_content_tokens": WEB_FETCH_MAX_CONTENT_TOKENS,
                **_domains(settings),
            }
        )
    if settings.offers(CODE_EXECUTION):
        tools.append({"type": CODE_EXECUTION_TYPE, "name": "code_execution"})
    return tools


def beta_header(tools: list[dict[str, Any]]) -> dict[str, str]:
    """``anthropic-beta`` for the tools of a request (no header when none needs one)."""
    betas = [BETAS[t["type"]] for t in tools if t.get("type") in BETAS]
    return {"anthropic-beta": ",".join(betas)} if betas else {}
