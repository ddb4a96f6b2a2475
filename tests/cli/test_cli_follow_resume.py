"""``maos logs --follow`` through a broken connection: it follows again after the last record, none lost or twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from controlplane.app import App
from maos_cli._errors import EXIT_INTERRUPTED
from tests.cli.conftest import Maos
from tests.harness.server import wait_for


class CuttableProxy:
    """A loopback TCP proxy to the control plane whose connections the test can cut (and refuse for a while)."""

    def __init__(self, upstream: str):
        self.host, _, port = upstream.rpartition(":")
        self.port = int(port)
        self.refusing = False
        self.accepted = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        """Listen on a free loopback port; its address."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def cut(self) -> None:
        """Close every proxied connection and refuse new ones."""
        self.refusing = True
        for writer in list(self.writers):
            writer.close()

    async def close(self) -> None:
        """Stop listening and close what is open."""
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_logs_follow_resumes_after_the_last_record_when_the_connection_breaks(
    control_plane: App, maos_home: Path
) -> None:
    proxy = CuttableProxy(control_plane.address)
    address = await proxy.start()
    log = logging.getLogger("controlplane.followprobe")
    env = {k: v for k, v in {**os.environ, **Maos(address, maos_home).env()}.items() if v is not None}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from maos_cli.main import main; main()",
        "logs",
        "--follow",
        "--grep",
        "follow-probe",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        await wait_for(
            lambda: control_plane.logbook.subscribers or proc.returncode is not None,
            30,
            message="the follower's subscriber",
        )
        assert proc.returncode is None, (await proc.stderr.read()).decode()
        log.warning("follow-probe 0")
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode()]
        proxy.cut()  # the stream breaks; records are written while the follower is away
        notice = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert "following again" in notice, notice
        log.warning("follow-probe 1")
        log.warning("follow-probe 2")
        accepted = proxy.accepted
        proxy.refusing = False
        await wait_for(
            lambda: proxy.accepted > accepted and control_plane.logbook.subscribers,
            30,
            message="the follower to come back",
        )
        log.warning("follow-probe 3")
        for _ in range(3):
            lines.append((await asyncio.wait_for(proc.stdout.readline(), 30)).decode())
        assert [line.split("follow-probe ")[1].strip() for line in lines] == ["0", "1", "2", "3"], lines
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == EXIT_INTERRUPTED
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proxy.close()
