"""Settings of the Claude plugin: key, model, base URL and per-type request parameters.

Resolution (first match wins):

* API key: parameter ``api_key`` > setting ``claude.api_key`` > ``ANTHROPIC_API_KEY`` > ``CLAUDE_API_KEY``.
* Model: parameter ``model`` > setting ``claude.model`` > :data:`DEFAULT_MODEL`.
* Base URL: parameter ``base_url`` > setting ``claude.base_url`` > ``ANTHROPIC_BASE_URL`` > Anthropic's.
* ``max_tokens``, ``temperature``, ``max_retries``, ``max_retry_wait``, ``timeout``: parameters
  of the agent type (``agents/*.yml`` or the spec), else the type's defaults.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

#: The default model: the current Sonnet of the installed SDK's model list (``anthropic.types.Model``).
#: The user guide's ``claude-3-sonnet-20240229`` is retired; a test checks this one is listed and not
#: deprecated by the SDK.
DEFAULT_MODEL = "claude-sonnet-4-6"
DEFAULT_MAX_TOKENS = 4096
#: Retries of one call (429/529/5xx/connection errors), each under a new permit of the pacer, before the
#: agent reports a RetryableError so the control plane retries later.
DEFAULT_MAX_RETRIES = 2
#: The longest (seconds) an agent waits in-process, for a permit or a retry-after; past it the work is
#: handed back to the control plane.
DEFAULT_MAX_RETRY_WAIT = 10.0
#: Seconds one HTTP attempt may take (the SDK's read timeout).
DEFAULT_TIMEOUT = 600.0

KEY_ENV_VARS = ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY")
BASE_URL_ENV_VAR = "ANTHROPIC_BASE_URL"
#: What a launched Claude agent receives from the control plane's environment (``AgentTypeSpec.environment``):
#: its model key (in any of its forms), the API's address and the proxies that reach it. Nothing else secret.
AGENT_ENVIRONMENT = (
    *KEY_ENV_VARS,
    "MAOS_CLAUDE_API_KEY",
    BASE_URL_ENV_VAR,
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "all_proxy",
)


def sdk_models() -> list[str]:
    """The model names the installed ``anthropic`` SDK lists (the literals of ``anthropic.types.Model``)."""
    from anthropic.types import Model

    names: list[str] = []
    for arg in typing.get_args(Model):
        names.extend(a for a in typing.get_args(arg) if isinstance(a, str))
    return names


def sdk_deprecated_models() -> dict[str, str]:
    """Models the installed SDK warns about (name -> end-of-life date); empty if it exposes none."""
    try:
        # Imported there by the SDK from its private anthropic._data, so not declared as an export.
        from anthropic.resources.messages.messages import DEPRECATED_MODELS  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - older or newer SDK layouts
        return {}
    return dict(DEPRECATED_MODELS)


@dataclass(frozen=True)
class ClaudeConfig:
    """Everything needed to call the Messages API for one agent type (or the planner)."""

    api_key: str = ""
    model: str = DEFAULT_MODEL
    base_url: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    #: None: not sent (the installed SDK no longer exposes it; when set it goes in ``extra_body``).
    temperature: float | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:  # never print the key
        shown = f"{self.api_key[:7]}…" if self.api_key else ""
        return (
            f"ClaudeConfig(api_key={shown!r}, model={self.model!r}, base_url={self.base_url!r}, "
            f"max_tokens={self.max_tokens}, temperature={self.temperature}, max_retries={self.max_retries})"
        )

    def with_params(self, params: Mapping[str, Any]) -> ClaudeConfig:
        """A copy with the agent type's parameters applied (unknown keys are ignored)."""
        changes: dict[str, Any] = {}
        if params.get("api_key"):
            changes["api_key"] = str(params["api_key"])
        if params.get("model"):
            changes["model"] = str(params["model"])
        if params.get("base_url"):
            changes["base_url"] = str(params["base_url"]).rstrip("/")
        if params.get("max_tokens") is not None:
            changes["max_tokens"] = _int_at_least("max_tokens", params["max_tokens"], 1)
        if "temperature" in params:
            changes["temperature"] = _temperature(params["temperature"])
        if params.get("max_retries") is not None:
            changes["max_retries"] = _int_at_least("max_retries", params["max_retries"], 0)
        if params.get("max_retry_wait") is not None:
            changes["max_retry_wait"] = _non_negative_float("max_retry_wait", params["max_retry_wait"])
        if params.get("timeout") is not None:
            changes["timeout"] = _non_negative_float("timeout", params["timeout"]) or DEFAULT_TIMEOUT
        return replace(self, **changes) if changes else self


def _setting(settings: Any, key: str) -> str:
    if settings is None:
        return ""
    try:
        value = settings[key]
    except (KeyError, TypeError):
        return ""
    return str(value or "").strip()


def resolve_config(
    settings: Any = None,
    params: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
) -> ClaudeConfig:
    """Resolve a :class:`ClaudeConfig` from settings, the environment and parameters.

    Args:
        settings: A :class:`controlplane.config.Settings` (or any mapping with ``claude.*`` keys), or None.
        params: The agent type's parameters (override everything).
        environ: The environment (default ``os.environ``).
        defaults: Per-type defaults (``max_tokens``, ``temperature``...) below the parameters.
    """
    environ = os.environ if environ is None else environ
    api_key = _setting(settings, "claude.api_key") or next(
        (environ[name].strip() for name in KEY_ENV_VARS if environ.get(name, "").strip()), ""
    )
    model = _setting(settings, "claude.model") or DEFAULT_MODEL
    base_url = _setting(settings, "claude.base_url") or environ.get(BASE_URL_ENV_VAR, "").strip() or None
    config = ClaudeConfig(api_key=api_key, model=model, base_url=base_url.rstrip("/") if base_url else None)
    if defaults:
        config = config.with_params(defaults)
    return config.with_params(params or {})


def settings_options() -> list[Any]:
    """The plugin's settings, the ``claude`` section of config.yml (``register_settings``)."""
    from controlplane.config import (
        Option,
        parse_bool,
        parse_domains,
        parse_positive_duration,
        parse_positive_int,
        parse_text,
    )

    return [
        Option(
            "claude.api_key", parse_text, "", "Anthropic API key (or ANTHROPIC_API_KEY / CLAUDE_API_KEY)."
        ),
        Option("claude.model", parse_text, "", "Model for Claude-backed agents; empty means the default."),
        Option("claude.base_url", parse_text, "", "Messages API base URL; empty means Anthropic's."),
        Option(
            "claude.tools.max_turns",
            parse_positive_int,
            20,
            "Most model calls one step's tool loop makes; a loop still calling tools then fails, saying so.",
        ),
        Option(
            "claude.tools.max_seconds",
            parse_positive_duration,
            900.0,
            "Longest wall time of one step's tool loop (seconds, or 15m).",
        ),
        Option(
            "claude.web_search.enabled",
            parse_bool,
            True,
            "Offer researchers Anthropic's server-side web search.",
        ),
        Option("claude.web_search.max_uses", parse_positive_int, 5, "Most web searches per model call."),
        Option(
            "claude.web_fetch.enabled",
            parse_bool,
            True,
            "Offer researchers Anthropic's server-side web fetch.",
        ),
        Option("claude.web_fetch.max_uses", parse_positive_int, 5, "Most pages fetched per model call."),
        Option(
            "claude.web.allowed_domains",
            parse_domains,
            [],
            "Only these domains are searched and fetched (a list, or comma-separated); empty: any.",
        ),
        Option(
            "claude.web.blocked_domains",
            parse_domains,
            [],
            "Domains never searched or fetched (ignored when allowed_domains is set).",
        ),
        Option(
            "claude.code_execution.enabled",
            parse_bool,
            True,
            "Offer coders and testers Anthropic's server-side code execution (a sandbox on the API's side).",
        ),
    ]


def load_plugin_settings() -> Any:
    """``controlplane.config.load_settings()``, or None when the settings cannot be read."""
    import logging

    try:
        from controlplane.config import load_settings

        return load_settings()
    except Exception as exc:  # noqa: BLE001 - a broken config.yml must not hide the environment's key
        logging.getLogger(__name__).warning(
            "claude: could not load MAOS settings (%s); using the environment", exc
        )
        return None


def _int_at_least(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"claude {name}: expected an integer, got {value!r}")  # noqa: TRY004
    number = int(value)
    if number < minimum:
        raise ValueError(f"claude {name}: must be at least {minimum}")
    return number


def _non_negative_float(name: str, value: Any) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"claude {name}: cannot be negative")
    return number


def _temperature(value: Any) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("claude temperature: must be between 0 and 1")
    return number
