"""Running a command on this machine with limits: time, output size, its whole process group.

Used by the ``shell`` agent type and by the local workspace tools of model-backed agents. The
command runs in a new session (its own process group), so a timeout or a cancellation kills it and
everything it started; its output is read to the end (a command is never blocked on a full pipe)
but only the first ``max_output_bytes`` are kept.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of a command's process group


@dataclass
class Completed:
    """How a command ended: its status (negative: killed by that signal) and the output kept."""

    returncode: int
    stdout: str
    stderr: str
    #: Output beyond ``max_output_bytes`` was read and dropped.
    truncated: bool = False


async def run_bounded(
    argv: Sequence[str],
    *,
    timeout: float,
    max_output_bytes: int,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    on_stdout: Callable[[str], None] | None = None,
) -> Completed:
    """Run ``argv`` (no shell unless ``argv`` starts one) and wait for it within ``timeout`` seconds.

    Raises:
        OSError: The command cannot start (not found, not executable).
        TimeoutError: It ran longer than ``timeout``; its process group was killed. The output read
            so far is on the exception's ``partial`` attribute (a :class:`Completed`).
        asyncio.CancelledError: Cancelled; its process group was killed.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=True,
    )
    stdout: list[str] = []
    stderr: list[str] = []
    kept = {"stdout": 0, "stderr": 0}
    truncated = False

    async def feed() -> None:
        if stdin is None or process.stdin is None:
            return
        try:
            process.stdin.write(stdin)
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command does not read its input
        finally:
            process.stdin.close()

    async def pump(stream: asyncio.StreamReader | None, into: list[str], name: str) -> None:
        nonlocal truncated
        assert stream is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := await stream.read(65536):
            room = max_output_bytes - kept[name]
            if room <= 0:
                truncated = True
                continue  # keep draining so the command is not blocked on a full pipe
            if len(chunk) > room:
                chunk, truncated = chunk[:room], True
            kept[name] += len(chunk)
            text = decoder.decode(chunk)
            if text and on_stdout is not None and name == "stdout":
                on_stdout(text)
            into.append(text)
        into.append(decoder.decode(b"", final=True))

    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            await asyncio.gather(
                feed(), pump(process.stdout, stdout, "stdout"), pump(process.stderr, stderr, "stderr")
            )
            code = await process.wait()
    except TimeoutError as exc:
        await kill_group(process)
        if not deadline.expired():
            raise
        exc.partial = Completed(-signal.SIGKILL, "".join(stdout), "".join(stderr), truncated)  # type: ignore[attr-defined]
        raise
    except asyncio.CancelledError:
        await kill_group(process)
        raise
    return Completed(code, "".join(stdout), "".join(stderr), truncated)


async def kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, SIGKILL it after a grace, and reap the process."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), KILL_GRACE)
            # The leader exited; make sure nothing it started in its group lingers.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            return
        except TimeoutError:
            continue
    await process.wait()
