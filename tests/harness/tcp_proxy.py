"""A TCP proxy in the test's process, between real processes and a real server, that can cut what passes.

A process given the proxy's address instead of the server's talks to the server through it,
byte for byte, until the test inflicts a fault:

* :meth:`TcpProxy.cut_after_commit` (in front of PostgreSQL): the next transaction whose
  statements carry ``marker`` and end with COMMIT reaches the server and commits there, but its
  answer never comes back: the connection is cut once the server answered (its ReadyForQuery
  seen). The client sees a dropped connection under its commit, whose rows are stored: a commit
  outcome it cannot know.
* :meth:`TcpProxy.hold_commit`: the same commit's client connection is cut at once, before the
  server sees the COMMIT, which the proxy keeps until :meth:`TcpProxy.release_commit` (the
  transaction stays open on the server meanwhile, holding its locks): the commit is in flight while
  the client tries to learn its outcome, then lands.
* :meth:`TcpProxy.pause` keeps what clients send from then on in the proxy (nothing lost) until
  :meth:`TcpProxy.resume`: a message in flight for as long as the test needs.
* :meth:`TcpProxy.hold` stops carrying what clients send (their connections stay open: messages
  go nowhere, as on a broken network path); :meth:`TcpProxy.shut` then cuts every connection and
  refuses new ones (the server seems gone to its clients; it still runs).
"""

from __future__ import annotations

import asyncio
import contextlib

#: PostgreSQL's ReadyForQuery message with any transaction status, minus that last byte.
READY_FOR_QUERY = b"Z\x00\x00\x00\x05"
#: PostgreSQL's Sync message: the server answers what came before it, then ReadyForQuery.
SYNC = b"S\x00\x00\x00\x04"


class TcpProxy:
    """Forwards connections on ``127.0.0.1:<port>`` to ``host:port`` (see the module docstring)."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._marker: bytes | None = None
        self._holding = False
        #: Set once a commit was cut (:meth:`cut_after_commit`, :meth:`hold_commit`).
        self.commit_cut = asyncio.Event()
        #: Set while a commit is held (:meth:`hold_commit`): the held COMMIT goes on once set again.
        self._commit_released: asyncio.Event | None = None
        #: Set once a held commit was answered by the server (:meth:`release_commit`).
        self.commit_landed = asyncio.Event()
        #: Server-side connections left open by :meth:`shut_client_side` (the server believes them alive).
        self._half_open: list[asyncio.StreamWriter] | None = None
        #: Cleared while clients' bytes are kept in the proxy (:meth:`pause`).
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut_after_commit(self, marker: bytes) -> None:
        """Cut the connection of the next commit carrying ``marker`` once the server has answered it."""
        self.commit_cut.clear()
        self._marker = marker

    def hold_commit(self, marker: bytes) -> None:
        """Cut the client of the next commit carrying ``marker`` at once, and keep its COMMIT from the
        server until :meth:`release_commit`."""
        self.cut_after_commit(marker)
        self.commit_landed.clear()
        self._commit_released = asyncio.Event()

    def release_commit(self) -> None:
        """Let the held COMMIT reach the server (:attr:`commit_landed` is set once it answered)."""
        assert self._commit_released is not None, "no commit is held"
        self._commit_released.set()

    def hold(self) -> None:
        """Carry nothing clients send from now on (their connections stay open)."""
        self._holding = True

    async def shut(self) -> None:
        """Cut every connection and refuse new ones."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def pause(self) -> None:
        """Keep what clients send from now on in the proxy, in order, until :meth:`resume`."""
        self._flowing.clear()

    def resume(self) -> None:
        """Carry on what :meth:`pause` kept, then what comes."""
        self._flowing.set()

    async def shut_client_side(self) -> None:
        """Cut every client and refuse new ones, but leave the connections to the server open, silent:
        the server believes its streams alive (a half-open TCP connection) until :meth:`close`."""
        self._half_open = []
        await self.shut()

    async def close(self) -> None:
        await self.shut()
        for kept in self._half_open or ():
            kept.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._connections.discard(task)
            return
        cutting = asyncio.Event()
        landed = asyncio.Event()  # (a held commit's answer came)

        async def client_to_server() -> None:
            seen = b""
            while data := await reader.read(65536):
                if self._holding:
                    continue
                if self._marker is not None:
                    seen = (seen + data)[-(1 << 20) :]
                    at = seen.find(self._marker)
                    if at >= 0 and b"COMMIT" in seen[at:]:
                        self._marker = None
                        cutting.set()  # (before the server can answer it)
                        released = self._commit_released
                        if released is not None:  # hold_commit: the client loses it now, the server later
                            writer.transport.abort()
                            self.commit_cut.set()
                            await released.wait()
                            # (a Sync of its own: the client's may have come after what was read)
                            up_writer.write(data + SYNC)
                            await up_writer.drain()
                            await landed.wait()
                            return
                await self._flowing.wait()
                up_writer.write(data)
                await up_writer.drain()

        async def server_to_client() -> None:
            answered = b""
            while data := await up_reader.read(65536):
                if cutting.is_set():  # the commit's answer is swallowed, then the connection cut
                    answered = (answered + data)[-64:]
                    if READY_FOR_QUERY in answered:
                        held = self._commit_released
                        if held is not None and not held.is_set():  # (answers before the held COMMIT)
                            answered = b""
                            continue
                        self.commit_cut.set()
                        if held is not None:
                            self._commit_released = None
                            self.commit_landed.set()
                            landed.set()
                        return
                    continue
                writer.write(data)
                await writer.drain()

        try:
            pumps = [asyncio.ensure_future(client_to_server()), asyncio.ensure_future(server_to_client())]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            if self._half_open is not None:
                self._half_open.append(up_writer)
            else:
                up_writer.transport.abort()
            self._connections.discard(task)
