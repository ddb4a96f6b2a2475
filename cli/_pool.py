"""Saying plainly when the answers come from offline agents, and how to get Claude ones."""

from __future__ import annotations

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from maos_cli._output import message

OFFLINE_NOTICE = (
    "note: the answers come from offline agents ({types}), which do no model work (echo hands back the "
    "instructions it is given). For Claude agents set ANTHROPIC_API_KEY (or claude.api_key in "
    "$MAOS_HOME/config.yml) and list Claude types in agents.pool (researcher: 2, coordinator: 1, ...), "
    "or add some with `maos agent spawn researcher`."
)
KEYED_OFFLINE_POOL_NOTICE = (
    "note: agents.pool holds only offline agents ({types}); with the Anthropic API key set, Claude agents "
    "are launched when work needs them. List Claude types in agents.pool (researcher: 2, coordinator: 1, "
    "...) to start them with the control plane."
)

_CONNECTED = [
    enums.AGENT_STATUS_IDLE,
    enums.AGENT_STATUS_BUSY,
    enums.AGENT_STATUS_PAUSED,
    enums.AGENT_STATUS_DRAINING,
]


def offline_notice(types: list[str], *, key_set: bool = False) -> None:
    """Say on stderr that the answers come from offline agents of ``types``, and how to get Claude ones.

    With ``key_set`` (Claude types can run here), say instead that they are launched as work needs them.
    """
    text = KEYED_OFFLINE_POOL_NOTICE if key_set else OFFLINE_NOTICE
    message(text.format(types=", ".join(sorted(set(types))) or "echo"))


async def offline_pool(client: Client) -> list[str]:
    """The types of the connected agents when every one is offline (empty otherwise, or with no agents)."""
    connected = [a async for a in client.iter_agents(statuses=_CONNECTED)]
    if connected and all(a.backing == enums.AGENT_BACKING_OFFLINE for a in connected):
        return [a.agent_type for a in connected]
    return []
