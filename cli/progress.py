"""Progress of a task while the CLI waits for it: on stderr, and the model's text with ``--follow``.

``maos task submit --wait`` and ``maos task wait`` show the steps done, the step running and the
tokens and cost so far. On a terminal the line is redrawn in place; otherwise a line is printed
when something other than a progress fraction changed. ``--follow`` prints each step's text as
its agent streams it (on stdout, under a header naming the step). With ``-o json`` or ``yaml``
nothing but the final document is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli._output import bare_id, output_format

T = TypeVar("T")


def progress_line(task: msgs.Task, running: dict[str, tuple[str, float]]) -> str:
    """One line: state, steps done, the steps running, tokens and cost so far."""
    state = enums.TaskStatus.Name(task.status).removeprefix("TASK_STATUS_")
    parts = [state]
    if task.status == enums.TASK_STATUS_PENDING and task.status_reason:  # "waiting for plan approval"
        parts.append(task.status_reason)
    if task.subtasks_total:
        parts.append(f"{task.subtasks_completed}/{task.subtasks_total} steps done")
    if running:
        shown = [
            f"{key} {title}".strip() + (f" {fraction:.0%}" if fraction else "")
            for key, (title, fraction) in list(running.items())[:3]
        ]
        more = f" (+{len(running) - 3})" if len(running) > 3 else ""
        parts.append("running " + ", ".join(shown) + more)
    u = task.usage
    tokens = u.input_tokens + u.output_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens
    if tokens or u.cost_micros:
        parts.append(f"{tokens:,} tokens, ${u.cost_micros / 1e6:.4f}")
    return " · ".join(parts)


class Progress:
    """Renders WatchTask messages (see the module docstring)."""

    def __init__(self, *, follow: bool, terminal: bool | None = None):
        self.follow = follow
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.running: dict[str, tuple[str, float]] = {}
        self._last = ""
        self._drawn = False
        self._streaming = ""

    def update(self, response: Any) -> None:
        """Take one WatchTask message."""
        event, sub = response.event, response.subtask
        key = bare_id(sub.name) if sub.name else ""
        if key:
            if sub.status == enums.SUBTASK_STATUS_RUNNING:
                self.running[key] = (sub.title, sub.progress)
            else:
                self.running.pop(key, None)
        if self.follow and event.type == enums.EVENT_TYPE_SUBTASK_OUTPUT and event.message:
            self._text(key, sub.title, event.message)
            return
        if self.terminal:
            self._draw(progress_line(response.task, self.running))
        else:  # a log: a line when more than a progress fraction changed
            self._print(progress_line(response.task, {k: (t, 0.0) for k, (t, _) in self.running.items()}))

    def _text(self, key: str, title: str, text: str) -> None:
        self._clear()
        if key != self._streaming:
            click.echo(f"\n── {key} {title} ──".rstrip())
            self._streaming = key
        click.echo(text, nl=False)

    def _draw(self, line: str) -> None:
        if line != self._last:
            self._last = line
            click.echo("\r\x1b[2K" + line[:160], nl=False, err=True, color=True)  # not colour: erase the line
            self._drawn = True

    def _print(self, line: str) -> None:
        if line != self._last:
            self._last = line
            click.echo(line, err=True)

    def _clear(self) -> None:
        if self._drawn:
            click.echo("\r\x1b[2K", nl=False, err=True, color=True)
            self._drawn = False
            self._last = ""

    def finish(self, task: msgs.Task) -> None:
        """Show the finished task's line in a log, if its stream had not shown it yet.

        The wait and the progress stream race: a task that finishes quickly can be answered
        before the stream's first message arrives.
        """
        if not self.terminal:
            self._print(progress_line(task, {}))

    def close(self) -> None:
        """End the display (a newline after streamed text, the progress line cleared)."""
        self._clear()
        if self._streaming:
            click.echo("")


async def with_progress(client: Client, task_id: str, wait: Callable[[], Awaitable[T]], *, follow: bool) -> T:
    """Run ``wait`` (which waits for the task) while showing its progress, unless the output is JSON or YAML."""
    if output_format() != "table":
        return await wait()
    display = Progress(follow=follow)

    async def watch() -> None:
        with contextlib.suppress(MaosRpcError, asyncio.CancelledError):
            async for response in client.watch_task(task_id, include_progress=True):
                display.update(response)

    watcher = asyncio.get_running_loop().create_task(watch())
    result: T | None = None
    try:
        result = await wait()
        return result
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
        if isinstance(result, msgs.Task):
            display.finish(result)
        display.close()
