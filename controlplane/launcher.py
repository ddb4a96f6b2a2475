"""Supervised local agent processes (``maos start --agents``, ``maos agent spawn``).

Each launched agent is a ``maos-agent run`` subprocess of the control plane,
started with a launch id it presents at Register so the control plane knows
it is managed. A process that exits without being asked to is restarted with
backoff; ``stop`` drains them (SIGTERM) and kills stragglers.

Against a TLS port the agents connect like clients on this machine, with
the ``client.tls.*`` settings (:meth:`LocalLauncher.use_tls`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent_sdk.environment import child_environment
from controlplane.agent_limits import AgentLimits
from controlplane.errors import FailedPrecondition, InvalidArgument, Unavailable
from controlplane.home import open_private, private_dir
from maos_common.tls import ClientTls, TlsFileError

log = logging.getLogger(__name__)

#: Seconds a process asked to stop (SIGTERM) after its grace gets before SIGKILL.
KILL_GRACE = 0.5
#: MAOS variables of this process a launched agent also gets (besides the non-secret settings).
AGENT_MAOS_VARIABLES = frozenset({"MAOS_TRACE_PLUGINS"})


def agent_environment(environ: Mapping[str, str], needed: Iterable[str] = ()) -> dict[str, str]:
    """The environment of a launched agent: the allow-list, the settings agents read, what its type needs.

    The ``MAOS_*`` variables of settings are passed except ``database.*``, ``redis.*``,
    ``security.*`` and secret-looking ones (:func:`maos_common.redaction.is_secret_setting`):
    an agent talks to the control plane, never to its database. ``needed`` names variables
    the agent's type asks for (:attr:`agent_sdk.AgentTypeSpec.environment`). Settings are
    MAOS's own and those of the installed plugins (``register_settings``).
    """
    from controlplane.config import known_options
    from maos_common.redaction import is_secret_setting

    settings = {
        o.env_var
        for o in known_options().values()
        if not o.key.startswith(("database.", "redis.", "security.")) and not is_secret_setting(o.key)
    }
    return child_environment(environ, [*sorted(settings | AGENT_MAOS_VARIABLES), *needed])


@dataclass
class Launch:
    """One supervised agent process."""

    id: str
    agent_type: str
    args: list[str]
    process: asyncio.subprocess.Process | None = None
    agent_id: str = ""
    restarts: int = 0
    stopping: bool = False
    #: Labels the agent gets when it registers (from SpawnAgents).
    labels: dict[str, str] = field(default_factory=dict)
    #: The principal that asked for it (SpawnAgents); "" for the control plane's own pool.
    owner: str = ""
    registered_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    supervisor: asyncio.Task[None] | None = field(default=None, repr=False)
    #: A restart in progress (its process must be stopped too if the launch is stopped meanwhile).
    starting: asyncio.Future[None] | None = field(default=None, repr=False)


class LocalLauncher:
    """Starts and supervises agent processes on this machine."""

    def __init__(
        self,
        server_address: str,
        home: Path | None = None,
        max_agents: int = 10,
        limits: AgentLimits | None = None,
    ):
        self.server_address = server_address
        #: Memory and CPU limits set on every process started (``system.max_*``, ``agents.defaults.*``).
        self.limits = limits or AgentLimits()
        self.home = home  # the agents' MAOS_HOME (custom agent types live in its agents/)
        self.log_dir = home / "logs" if home is not None else None
        self.max_agents = max_agents
        self.launches: dict[str, Launch] = {}
        #: Called when a launched process registers (the launch then knows its agent id).
        self.on_registered: Callable[[Launch], None] | None = None
        self._reapers: set[asyncio.Task[None]] = set()
        #: The API key (agent role) launched agents authenticate with, passed as MAOS_TOKEN.
        self.token: str | None = None
        #: How launched agents connect (plaintext unless :meth:`use_tls`).
        self.tls = ClientTls()
        self._cannot_launch = ""
        #: The environment variables an agent type needs (its spec's ``environment``), set by build_app.
        self.type_environment: Callable[[str], Iterable[str]] | None = None
        self._stopped = False

    def _type_environment(self, agent_type: str) -> Iterable[str]:
        if self.type_environment is None:
            return ()
        try:
            return self.type_environment(agent_type)
        except InvalidArgument:  # the type is gone (a custom type's file was removed): nothing extra
            return ()

    def use_tls(self, tls: ClientTls, *, client_certificate_required: bool) -> None:
        """Launched agents connect over TLS with these files (checked now; InvalidArgument names the setting).

        When the server requires client certificates and ``tls`` has none,
        nothing is launched: :meth:`spawn` raises FailedPrecondition saying what to set.
        """
        try:
            tls.credentials()
        except TlsFileError as exc:
            fields = {
                tls.ca_file: "client.tls.ca_file",
                tls.cert_file: "client.tls.cert_file",
                tls.key_file: "client.tls.key_file",
            }
            setting = fields.get(exc.path, "client.tls")
            raise InvalidArgument(
                f"{setting} (used by launched agents): {exc.message}", field=setting
            ) from None
        self.tls = ClientTls(True, tls.ca_file, tls.cert_file, tls.key_file, tls.server_name)
        if not tls.ca_file:
            log.warning(
                "client.tls.ca_file is not set: launched agents verify this control plane's "
                "certificate with the system's trusted CAs"
            )
        self._cannot_launch = (
            "the control plane requires client certificates (server.tls.require_client_auth) but launched "
            "agents have none: set client.tls.cert_file and client.tls.key_file"
            if client_certificate_required and not tls.cert_file
            else ""
        )

    @property
    def active(self) -> int:
        """Launches not being stopped."""
        return sum(1 for launch in self.launches.values() if not launch.stopping)

    async def spawn(
        self,
        agent_type: str,
        *,
        capabilities: list[str] | None = None,
        max_concurrency: int = 0,
        labels: dict[str, str] | None = None,
        owner: str = "",
    ) -> Launch:
        """Start one supervised agent process of ``agent_type`` (owned by ``owner``; "": the control plane)."""
        if self._cannot_launch:
            raise FailedPrecondition(self._cannot_launch, reason="ERROR_REASON_NOT_SUPPORTED")
        if self._stopped:
            raise Unavailable("the control plane is stopping", reason="ERROR_REASON_SHUTTING_DOWN")
        self.limits.admit(self.active)
        launch_id = secrets.token_hex(6)
        args = [
            sys.executable,
            "-m",
            "agent_sdk.runner",
            "run",
            "--type",
            agent_type,
            "--server",
            self.server_address,
            "--launch-id",
            launch_id,
            "--grace",
            "10",
            *self.tls.agent_args(),
        ]
        if capabilities:
            args += ["--capabilities", ",".join(capabilities)]
        if max_concurrency:
            args += ["--max-concurrency", str(max_concurrency)]
        launch = Launch(launch_id, agent_type, args, labels=dict(labels or {}), owner=owner)
        self.launches[launch_id] = launch
        try:
            await self._start(launch)
        except OSError as exc:  # no process, no quota used
            del self.launches[launch_id]
            raise Unavailable(
                f"cannot start a {agent_type} agent process: {exc}", reason="ERROR_REASON_NOT_SUPPORTED"
            ) from exc
        if launch.stopping or self._stopped:  # stopped while it started: end it, do not supervise it
            launch.stopping = True
            self.launches[launch_id] = launch
            await self.stop_launch(launch, KILL_GRACE)
            raise Unavailable("the control plane is stopping", reason="ERROR_REASON_SHUTTING_DOWN")
        launch.supervisor = asyncio.get_running_loop().create_task(self._supervise(launch))
        return launch

    async def _start(self, launch: Launch) -> None:
        stderr = None
        if self.log_dir is not None:
            private_dir(self.log_dir)
            stderr = open_private(self.log_dir / f"agent-{launch.agent_type}-{launch.id}.log")
        # An allow-list, not this process's environment: no model key the type does not need, no
        # database URL, no other secret (the TLS choice is in the arguments).
        env = agent_environment(os.environ, self._type_environment(launch.agent_type))
        if self.home is not None:
            env["MAOS_HOME"] = str(self.home)
        if self.token:
            env["MAOS_TOKEN"] = self.token
        launch.process = await asyncio.create_subprocess_exec(
            *launch.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
        try:
            self.limits.apply(launch.process.pid)
        except OSError as exc:  # the process already exited: its supervisor sees that
            log.warning("cannot limit agent process %s (%s): %s", launch.id, launch.agent_type, exc)
        if stderr is not None:
            stderr.close()

    async def _supervise(self, launch: Launch) -> None:
        while True:
            assert launch.process is not None
            code = await launch.process.wait()
            if launch.stopping:
                return
            launch.restarts += 1
            delay = min(30.0, 0.5 * 2 ** min(launch.restarts, 6))
            log.warning(
                "agent process %s (%s) exited with %s; restarting in %.1f s",
                launch.id,
                launch.agent_type,
                code,
                delay,
            )
            await asyncio.sleep(delay)
            if launch.stopping:
                return
            # Shielded: a stop arriving meanwhile waits for the new process and stops it too,
            # instead of cancelling the start half-way and losing track of a running process.
            launch.starting = asyncio.ensure_future(self._start(launch))
            try:
                await asyncio.shield(launch.starting)
            except OSError:
                log.exception(
                    "restarting agent process %s (%s) failed; giving up", launch.id, launch.agent_type
                )
                self.launches.pop(launch.id, None)
                return
            if launch.stopping:
                return

    def registered(self, launch_id: str, agent_id: str) -> None:
        """A launched process registered as ``agent_id``."""
        launch = self.launches.get(launch_id)
        if launch is not None:
            launch.agent_id = agent_id
            launch.registered_event.set()
            if self.on_registered is not None:
                self.on_registered(launch)

    async def wait_registered(self, launches: list[Launch], timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until the launched processes have registered."""
        waits = [asyncio.ensure_future(launch.registered_event.wait()) for launch in launches]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for waiter in pending:
                waiter.cancel()

    def by_agent(self, agent_id: str) -> Launch | None:
        """The launch of a registered agent, if it is managed here."""
        return next((launch for launch in self.launches.values() if launch.agent_id == agent_id), None)

    async def stop_launch(self, launch: Launch, grace: float) -> None:
        """Ask one process to drain (SIGTERM), then kill it after ``grace``."""
        launch.stopping = True
        if launch.starting is not None and not launch.starting.done():
            try:
                await asyncio.shield(launch.starting)
            except Exception as exc:  # noqa: BLE001 - a failed restart leaves no new process to stop
                log.warning("restarting agent process %s failed: %s", launch.id, exc)
        process = launch.process
        if process is not None and process.returncode is None:
            try:
                process.terminate()
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                process.kill()
                await process.wait()
            except ProcessLookupError:
                pass
        if launch.supervisor is not None:
            launch.supervisor.cancel()
        self.launches.pop(launch.id, None)

    async def restart(self, launch: Launch, grace: float) -> None:
        """End the launch's process and start a new one in its place (same type, arguments and labels).

        The process, already told to drain and leave, gets ``grace`` seconds to exit on its
        own, then SIGTERM and, :data:`KILL_GRACE` later, SIGKILL. The new process
        registers as a new agent (:attr:`Launch.registered_event` is set again then).

        Raises:
            Unavailable: The new process could not be started (the launch is then gone).
        """
        if launch.supervisor is not None:
            launch.supervisor.cancel()
            await asyncio.gather(launch.supervisor, return_exceptions=True)
        if launch.starting is not None and not launch.starting.done():
            await asyncio.gather(asyncio.shield(launch.starting), return_exceptions=True)
        process = launch.process
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), grace)
            except TimeoutError:
                try:
                    process.terminate()
                    await asyncio.wait_for(asyncio.shield(process.wait()), KILL_GRACE)
                except TimeoutError:
                    process.kill()
                    await process.wait()
                except ProcessLookupError:
                    pass
        launch.agent_id = ""
        launch.registered_event = asyncio.Event()
        try:
            await self._start(launch)
        except OSError as exc:
            self.launches.pop(launch.id, None)
            raise Unavailable(
                f"cannot start a {launch.agent_type} agent process: {exc}",
                reason="ERROR_REASON_NOT_SUPPORTED",
            ) from exc
        launch.supervisor = asyncio.get_running_loop().create_task(self._supervise(launch))
        log.info(
            "agent process %s (%s) restarted as pid %s",
            launch.id,
            launch.agent_type,
            launch.process.pid if launch.process else "?",
        )

    def stop_after(self, launch: Launch, grace: float) -> None:
        """Let a process that was told to leave exit within ``grace`` seconds, then end it (no restart)."""
        launch.stopping = True

        async def reap() -> None:
            process = launch.process
            if process is not None and process.returncode is None:
                try:
                    await asyncio.wait_for(asyncio.shield(process.wait()), grace)
                except TimeoutError:
                    log.warning(
                        "agent process %s (%s) did not exit within %.1f s; stopping it",
                        launch.id,
                        launch.agent_type,
                        grace,
                    )
            await self.stop_launch(launch, KILL_GRACE)

        reaper = asyncio.get_running_loop().create_task(reap())
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop every process (and launch no more)."""
        self._stopped = True
        for reaper in list(self._reapers):
            reaper.cancel()
        await asyncio.gather(*(self.stop_launch(launch, grace) for launch in list(self.launches.values())))
