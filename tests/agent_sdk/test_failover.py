"""Several control-plane addresses: clients, the CLI and agents use a live one and follow when theirs dies."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from agent_sdk.addresses import AddressError, channel_target, parse_addresses
from agent_sdk.client import Client
from agent_sdk.errors import UnavailableError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.tls import tls_credentials
from tests.harness.server import (
    ControlPlaneProcess,
    empty_postgres,
    free_port,
    make_settings,
    start_app,
    wait_for,
)

# --- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7100", ("127.0.0.1:7100",)),
        (" 127.0.0.1:7100 , 127.0.0.1:7101 ", ("127.0.0.1:7100", "127.0.0.1:7101")),
        ("[::1]:7100,[::1]:7101", ("[::1]:7100", "[::1]:7101")),
        ("dns:///maos.internal:7100", ("dns:///maos.internal:7100",)),
        ("localhost:7100,maos-1.internal:7100", ("localhost:7100", "maos-1.internal:7100")),
    ],
)
def test_address_lists_are_parsed(text: str, expected: tuple[str, ...]) -> None:
    assert parse_addresses(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no control-plane address given"),
        ("127.0.0.1:7100,", "entry 2 is empty"),
        ("127.0.0.1:7100,,127.0.0.1:7101", "entry 2 is empty"),
        ("127.0.0.1", "has no port"),
        ("127.0.0.1:0", "the port must be a number from 1 to 65535, not '0'"),
        ("127.0.0.1:65536", "not '65536'"),
        ("127.0.0.1:http", "not 'http'"),
        (":7100", "has no host"),
        ("::1:7100", "an IPv6 address is written [address]:port"),
        ("dns:///maos.internal:7100,127.0.0.1:7100", "cannot be listed with other addresses"),
    ],
)
def test_bad_address_lists_are_refused_with_the_entry_at_fault(text: str, message: str) -> None:
    with pytest.raises(AddressError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_addresses(text)


def test_one_channel_target_spans_the_list() -> None:
    assert channel_target(("127.0.0.1:7100",)) == "127.0.0.1:7100"
    assert channel_target(("127.0.0.1:7100", "127.0.0.2:7101")) == "ipv4:127.0.0.1:7100,127.0.0.2:7101"
    assert channel_target(("[::1]:7100", "[::1]:7101")) == "ipv6:[::1]:7100,[::1]:7101"
    assert channel_target(("localhost:7100", "127.0.0.1:7101")) == "ipv4:127.0.0.1:7100,127.0.0.1:7101"
    with pytest.raises(AddressError, match="mix IPv4 and IPv6"):
        channel_target(("127.0.0.1:7100", "[::1]:7101"))
    with pytest.raises(AddressError, match="cannot resolve 'no-such-host.invalid'"):
        channel_target(("127.0.0.1:7100", "no-such-host.invalid:7101"))


def test_a_client_refuses_a_bad_list_before_connecting() -> None:
    with pytest.raises(AddressError, match="entry 1 is empty"):
        Client(",127.0.0.1:7100")


# --- the client and the CLI --------------------------------------------------------------------------


async def test_a_client_skips_a_dead_address_and_follows_when_its_server_stops(tmp_path: Path) -> None:
    first = await start_app(make_settings(tmp_path / "a"))
    second = await start_app(make_settings(tmp_path / "b"))
    dead = f"127.0.0.1:{free_port()}"
    try:
        async with Client(first.address) as direct:
            await direct.submit_task(description="only on the first server")
        async with Client(f"{dead},{first.address},{second.address}", timeout=5) as client:
            assert client.addresses == (dead, first.address, second.address)
            assert len((await client.list_tasks()).tasks) == 1  # the first live address serves
            await first.stop(grace=0.5)
            # ListTasks is idempotent: the call that meets the dead connection is retried on the next address.
            assert len((await client.list_tasks()).tasks) == 0
            assert (await client.status()).version
    finally:
        await first.stop(grace=0.5)
        await second.stop(grace=0.5)


async def test_over_tls_every_address_is_checked_for_the_first_addresss_name(tmp_path: Path, pki) -> None:
    app = await start_app(make_settings(tmp_path / "home", **pki.server_settings()))
    port = app.address.rsplit(":", 1)[1]
    try:
        credentials = tls_credentials(ca=pki.ca)
        # The certificate names localhost and 127.0.0.1: the first entry's host is the name checked.
        async with Client(f"localhost:{free_port()},127.0.0.1:{port}", credentials=credentials) as client:
            assert (await client.status()).version
        code, _, err = await maos(
            f"127.0.0.1:{free_port()},localhost:{port}", tmp_path / "home", *pki.client_args(), "task", "list"
        )
        assert code == 0, err
        # A name the certificate does not carry fails the handshake, whichever replica answers.
        async with Client(
            f"127.0.0.1:{free_port()},127.0.0.1:{port}",
            credentials=credentials,
            tls_server_name="elsewhere.example",
            timeout=2,
        ) as client:
            with pytest.raises(UnavailableError):
                await client.status()
    finally:
        await app.stop(grace=0.5)


async def maos(address: str, home: Path, *args: str) -> tuple[int, str, str]:
    """A real ``maos`` process."""
    env = {
        **os.environ,
        "MAOS_HOME": str(home),
        "MAOS_SERVER_ADDRESS": address,
        "NO_COLOR": "1",
        "PYTHONPATH": os.getcwd(),
    }
    for name in ("MAOS_TOKEN", "MAOS_TLS", "MAOS_TLS_CA", "MAOS_CLIENT_TLS_ENABLED", "MAOS_ADDR"):
        env.pop(name, None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "maos_cli.main",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_uses_the_next_live_address(tmp_path: Path) -> None:
    app = await start_app(make_settings(tmp_path / "home"))
    try:
        dead = f"127.0.0.1:{free_port()}"
        both = f"{dead},{app.address}"
        code, out, err = await maos(both, tmp_path / "home", "task", "submit", "listed twice")
        assert code == 0, err
        code, out, err = await maos(dead, tmp_path / "home", "--timeout", "1", "task", "list")
        assert code == 6, (out, err)  # only a dead address: unavailable
        code, out, err = await maos(f"{dead},{app.address}", tmp_path / "home", "-o", "json", "task", "list")
        assert code == 0, err
        assert "listed twice" in out
        code, out, err = await maos(f"{app.address},,{dead}", tmp_path / "home", "task", "list")
        assert code == 2
        assert "entry 2 is empty" in err
    finally:
        await app.stop(grace=0.5)


# --- agents --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_an_agent_resumes_its_session_on_the_other_address_and_keeps_its_work(
    tmp_path: Path, agent_processes, database: str, request: pytest.FixtureRequest
) -> None:
    """The control plane dies and comes back on another port with the same database, within the lease."""
    home = tmp_path / "home"
    env: dict[str, str] = {}
    if database == "postgresql":
        url = request.getfixturevalue("postgres_url")
        empty_postgres(url)
        env["MAOS_DATABASE_PRIMARY_URL"] = url
    cp = ControlPlaneProcess(home, **env)
    other = f"127.0.0.1:{free_port()}"
    cp.start()
    await cp.wait_ready()
    agent = agent_processes(f"{cp.address},{other}", "sleep", home=home)
    client = Client(f"{cp.address},{other}", timeout=5)
    try:
        await wait_for(lambda: _agents(client), 30, message="the agent to connect")
        [registered] = (await client.list_agents()).agents
        task = await client.submit_task(
            description="sleep", task_type="sleep", metadata={"sleep_seconds": "3", "sleep_steps": "6"}
        )

        async def running() -> bool:
            full = await client.get_task(task.name, full=True)
            return bool(full.subtasks) and full.subtasks[0].status == enums.SUBTASK_STATUS_RUNNING

        await wait_for(running, 20, message="the subtask to run")
        # A wait in flight across the failover: its WatchTask stream is opened again on the other address.
        waiting = asyncio.ensure_future(client.wait_task(task.name, timeout=60))
        cp.kill()
        cp.port, cp.address = int(other.rsplit(":", 1)[1]), other
        cp.start()
        await cp.wait_ready()
        done = await waiting
        assert done.status == enums.TASK_STATUS_COMPLETED
        [sub] = (await client.get_task(task.name, full=True)).subtasks
        # The first attempt completed on the agent that held it: the session was resumed, not re-dispatched.
        assert (sub.attempt, sub.agent) == (0, registered.name)
        assert agent.process.poll() is None
    finally:
        await client.close()
        agent.stop()
        cp.stop()


async def _agents(client: Client) -> bool:
    try:
        return bool((await client.list_agents()).agents)
    except Exception:  # noqa: BLE001 - not serving yet
        return False


async def test_maos_agent_takes_a_list_from_maos_server_address(tmp_path: Path) -> None:
    app = await start_app(make_settings(tmp_path / "home"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOS_")}
    env.update(MAOS_HOME=str(tmp_path / "home"), PYTHONPATH=os.getcwd())
    command = [sys.executable, "-m", "agent_sdk.runner", "run", "--type", "echo", "--log-level", "warning"]
    bad = await asyncio.create_subprocess_exec(
        *command, env={**env, "MAOS_SERVER_ADDRESS": f"{app.address},"}, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(bad.communicate(), 60)
    assert bad.returncode == 2
    assert "entry 2 is empty" in err.decode()
    agent = await asyncio.create_subprocess_exec(
        *command, env={**env, "MAOS_SERVER_ADDRESS": f"127.0.0.1:{free_port()},{app.address}"}
    )
    try:
        await wait_for(lambda: len(app.engine.sessions) == 1, 30, message="the agent to connect")
    finally:
        agent.terminate()
        await asyncio.wait_for(agent.wait(), 30)
        await app.stop(grace=0.5)
