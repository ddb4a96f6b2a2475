"""A small MCP server for tests, on the official ``mcp`` package's MCPServer (formerly FastMCP).

Run as ``python -m tests.harness.mcp_facts`` (stdio), ``... --http PORT`` (streamable HTTP on
127.0.0.1), or with ``--crash`` (exits before it answers, writing a reason to stderr).

Tools:
    lookup_fact(topic): a fact from :data:`FACTS` (an error result for an unknown topic).
    add(a, b): the sum.
    slow(seconds): answers after sleeping (call timeouts).
    big(chars): a text of ``chars`` characters (result bounds).
    spawn_child(): starts a grandchild process that sleeps, and returns its pid (process cleanup).
    my_pid(): the server's own pid.
    environment(name): the value of an environment variable ("" when unset).
    where(): the server's working directory.

With ``FACTS_EXTRA_TOOLS=N`` in its environment it offers N more tools (``extra_0``...).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

FACTS = {
    "everest": "Mount Everest is 8,849 metres high.",
    "light": "Light travels 299,792,458 metres per second in a vacuum.",
}

server = MCPServer("facts")


@server.tool(description="Look up a fact about a topic.")
def lookup_fact(topic: str) -> str:
    if topic.lower() not in FACTS:
        raise ToolError(f"no fact about {topic!r}")
    return FACTS[topic.lower()]


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> str:
    return str(a + b)


@server.tool(description="Answer after sleeping.")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@server.tool(description="A long text.")
def big(chars: int) -> str:
    return "x" * chars


@server.tool(description="Start a grandchild process and return its pid.")
def spawn_child() -> str:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return str(child.pid)


@server.tool(description="The server's pid.")
def my_pid() -> str:
    return str(os.getpid())


@server.tool(description="An environment variable's value.")
def environment(name: str) -> str:
    return os.environ.get(name, "")


@server.tool(description="The working directory.")
def where() -> str:
    return os.getcwd()


def _add_extra_tools(count: int) -> None:
    """``FACTS_EXTRA_TOOLS=N``: N more tools, ``extra_0``... (bounds on how many tools are offered)."""
    for index in range(count):

        def extra(index: int = index) -> str:
            return str(index)

        server.add_tool(extra, name=f"extra_{index}", description=f"Extra tool {index}.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=0, help="serve streamable HTTP on 127.0.0.1:PORT")
    parser.add_argument("--crash", action="store_true", help="exit at once with a message on stderr")
    parser.add_argument("--tag", default="", help="ignored: marks the process for tests that look for it")
    args = parser.parse_args()
    _add_extra_tools(int(os.environ.get("FACTS_EXTRA_TOOLS") or 0))
    if args.crash:
        print("facts: cannot open the facts database", file=sys.stderr, flush=True)
        sys.exit(3)
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run()


if __name__ == "__main__":
    main()
