"""Functions the ``python`` agent type calls in tests (``tests.plugins.agent_functions:NAME``)."""

from __future__ import annotations

import asyncio
import threading

from agent_sdk import Context, PermanentError, Result, Usage


def shout(ctx: Context, suffix: str = "!") -> str:
    """A plain function: runs in a worker thread; reports progress from there."""
    assert threading.current_thread() is not threading.main_thread()
    ctx.progress(0.5, "shouting")
    ctx.output("working")
    return ctx.assignment.instructions.upper() + suffix


async def count_inputs(ctx: Context) -> Result:
    """An async function returning a Result."""
    await asyncio.sleep(0)
    return Result(output=f"{len(ctx.assignment.inputs)} inputs", usage=Usage(model_calls=0))


def returns_a_number(ctx: Context) -> int:
    """A mistake: neither a str nor a Result."""
    return 42


def refuses(ctx: Context) -> str:
    """Fails for good."""
    raise PermanentError(f"refusing {ctx.assignment.instructions!r}")


async def hangs(ctx: Context) -> str:
    """Never returns (until cancelled)."""
    await asyncio.sleep(3600)
    return "unreachable"


NOT_CALLABLE = "a string"


def environment(ctx: Context) -> str:
    """The agent process's environment, as JSON (what a launched agent was given)."""
    import json
    import os

    return json.dumps(dict(os.environ), sort_keys=True)
