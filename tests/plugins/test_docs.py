"""docs/plugin_hooks.md documents every hook with its exact signature (and nothing else)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controlplane.plugins import get_plugin_manager

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugin_hooks.md"
HEADING = re.compile(r"^#{2,4} (?P<name>[a-z_]+)\((?P<args>[^)]*)\)\s*$", re.MULTILINE)


def hook_signatures() -> dict[str, str]:
    """``name(arg, ...)`` of every hook the plugin manager knows."""
    pm = get_plugin_manager(load_entrypoints=False)
    callers = {name: caller for name, caller in vars(pm.hook).items() if not name.startswith("_")}
    assert callers, "the plugin manager has no hooks"
    return {name: f"{name}({', '.join(caller.spec.argnames)})" for name, caller in callers.items()}


def documented() -> dict[str, str]:
    """Heading signatures of the docs page, by hook name."""
    return {m["name"]: f"{m['name']}({m['args']})" for m in HEADING.finditer(DOCS.read_text())}


@pytest.mark.parametrize("name", sorted(hook_signatures()))
def test_every_hook_has_a_heading_with_its_exact_signature(name: str) -> None:
    signature = hook_signatures()[name]
    headings = documented()
    assert name in headings, f"docs/plugin_hooks.md has no section for the hook {signature}"
    assert headings[name] == signature, (
        f"docs/plugin_hooks.md documents {headings[name]}, the hook is {signature}"
    )


def test_every_documented_hook_exists() -> None:
    extra = sorted(set(documented()) - set(hook_signatures()))
    assert not extra, f"docs/plugin_hooks.md documents hooks that do not exist: {extra}"


def test_every_hook_states_firstresult_and_awaitable_behaviour() -> None:
    text = DOCS.read_text()
    sections = re.split(r"^#{2,4} ", text, flags=re.MULTILINE)
    for name in hook_signatures():
        section = next(s for s in sections if s.startswith(f"{name}("))
        assert "firstresult" in section and "Awaitable" in section, (
            f"the section of {name} omits its call semantics"
        )
        assert "```python" in section, f"the section of {name} has no example"


GUIDE = DOCS.parent / "plugins.md"


@pytest.mark.parametrize("name", sorted(hook_signatures()))
def test_the_plugin_authors_guide_lists_every_hook_with_its_signature(name: str) -> None:
    assert f"`{hook_signatures()[name]}`" in GUIDE.read_text(), (
        f"docs/plugins.md does not list the hook {hook_signatures()[name]} in its table"
    )
