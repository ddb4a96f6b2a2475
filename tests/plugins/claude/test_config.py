"""Settings resolution, the default model and prices."""

from __future__ import annotations

import logging

import pytest

from controlplane.config import load_settings
from maos_plugins.claude import pricing
from maos_plugins.claude.config import (
    DEFAULT_MODEL,
    ClaudeConfig,
    resolve_config,
    sdk_deprecated_models,
    sdk_models,
)


def test_default_model_is_current_in_the_installed_sdk() -> None:
    models = sdk_models()
    assert models, "the SDK lists no models"
    assert DEFAULT_MODEL in models
    assert not DEFAULT_MODEL.startswith("claude-3")
    assert DEFAULT_MODEL not in sdk_deprecated_models()
    assert "sonnet" in DEFAULT_MODEL
    assert pricing.price_for(DEFAULT_MODEL) is not None


def test_key_precedence(tmp_path) -> None:
    env = {"ANTHROPIC_API_KEY": "anthropic-env", "CLAUDE_API_KEY": "claude-env"}
    with_key = load_settings(home=tmp_path, environ={}, overrides={"claude.api_key": "setting"})
    without = load_settings(home=tmp_path, environ={})
    assert resolve_config(with_key, environ=env).api_key == "setting"
    assert resolve_config(without, environ=env).api_key == "anthropic-env"
    assert resolve_config(without, environ={"CLAUDE_API_KEY": "claude-env"}).api_key == "claude-env"
    assert resolve_config(without, environ={}).api_key == ""
    assert resolve_config(without, {"api_key": "param"}, environ=env).api_key == "param"


def test_config_yml_refers_to_the_environment(tmp_path) -> None:
    (tmp_path / "config.yml").write_text(
        'claude:\n  api_key: "${CLAUDE_API_KEY}"\n  model: "claude-opus-4-6"\n'
    )
    settings = load_settings(home=tmp_path, environ={"CLAUDE_API_KEY": "from-yml"})
    config = resolve_config(settings, environ={})
    assert config.api_key == "from-yml" and config.model == "claude-opus-4-6"


def test_model_and_base_url(tmp_path) -> None:
    settings = load_settings(home=tmp_path, environ={}, overrides={"claude.base_url": "http://proxy:8080/"})
    config = resolve_config(settings, environ={"ANTHROPIC_BASE_URL": "http://env"})
    assert config.model == DEFAULT_MODEL and config.base_url == "http://proxy:8080"
    plain = resolve_config(
        load_settings(home=tmp_path, environ={}), environ={"ANTHROPIC_BASE_URL": "http://env"}
    )
    assert plain.base_url == "http://env"
    assert resolve_config(None, environ={}).base_url is None


def test_parameters_are_validated() -> None:
    base = ClaudeConfig(api_key="k")
    assert base.with_params({"max_tokens": "300", "temperature": "0.5"}).max_tokens == 300
    assert base.with_params({"temperature": None}).temperature is None
    for bad in ({"max_tokens": 0}, {"max_tokens": True}, {"temperature": 1.5}, {"max_retries": -1}):
        with pytest.raises(ValueError):
            base.with_params(bad)


def test_repr_hides_the_key() -> None:
    assert "sk-ant-secret-value" not in repr(ClaudeConfig(api_key="sk-ant-secret-value"))


def test_prices() -> None:
    assert pricing.cost_micros("claude-sonnet-4-5-20250929", 1_000_000, 0) == 3_000_000
    assert pricing.cost_micros("claude-haiku-4-5", 0, 1000) == 5000
    assert pricing.cost_micros("claude-opus-4-1", 0, 0, 0, 1000) == 1500
    # a 1-hour cache write costs twice the input price, a 5-minute one 1.25 times
    assert (
        pricing.cost_micros("claude-sonnet-4-6", 0, 0, 1000, cache_creation_1h_tokens=400)
        == 600 * 3.75 + 400 * 6
    )


def test_unknown_models(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="maos_plugins.claude.pricing"):
        assert pricing.cost_micros("claude-sonnet-9-9", 1000) == 3000  # the family's price
        assert pricing.cost_micros("some-other-model", 1000, 1000) == 0
    text = caplog.text
    assert "claude-sonnet-9-9" in text and "some-other-model" in text
