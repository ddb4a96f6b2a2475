"""A local workspace per task, and the client tools that work in it (only with ``agents.allow_exec``).

The workspace of task ``tasks/X`` is ``$MAOS_HOME/workspaces/X`` (mode 0700), shared by the
task's steps that run on this machine. Its tools:

* ``list_files``: the files under a folder (relative paths and sizes);
* ``read_file``: a text file (at most ``agents.workspace.max_output_bytes``);
* ``write_file``: create or replace a file (at most ``agents.workspace.max_file_bytes``), making
  its folders;
* ``run_command``: a command line run by ``/bin/sh -c`` in the workspace (or ``argv``, a list run
  without a shell), in its own process group, with the allow-listed environment of the ``shell``
  type (no model key, credential or database URL), killed after
  ``agents.workspace.command_timeout``; its exit status and at most ``max_output_bytes`` of output
  are the result.

Paths are relative to the workspace: an absolute path, ``..``, or a symbolic link that leads out
of it is refused with an error result. The files a step wrote (new or changed while it ran) are
stored with its result as artifacts, up to ``agents.workspace.max_artifact_bytes``. A workspace
not used for ``agents.workspace.retention`` is deleted when an agent next opens one.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import re
import shutil
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_sdk.context import Artifact
from agent_sdk.environment import child_environment
from agent_sdk.process import run_bounded
from maos_plugins.claude.tools.base import ClientTool, ToolOutput
from maos_plugins.claude.tools.settings import WorkspaceLimits

#: Most entries ``list_files`` returns and a step's artifact scan looks at.
MAX_LISTED = 1000
MAX_SCANNED = 10_000
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]")


class WorkspaceError(Exception):
    """A request the workspace refuses (a path outside it, a file too large...)."""


@dataclass(frozen=True)
class FunctionTool:
    """A :class:`~maos_plugins.claude.tools.base.ClientTool` made of a name, a schema and a coroutine."""

    name: str
    description: str
    input_schema: dict[str, Any]
    fn: Callable[[dict[str, Any]], Awaitable[ToolOutput]]

    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        """Run the tool; a :class:`WorkspaceError` is an error result for the model."""
        try:
            return await self.fn(arguments)
        except WorkspaceError as exc:
            return ToolOutput(str(exc), is_error=True)


def workspaces_root(home: Path) -> Path:
    """Where the workspaces of a MAOS home live."""
    return home / "workspaces"


def sweep(root: Path, retention: float, now: float | None = None) -> list[Path]:
    """Delete the workspaces under ``root`` not used for ``retention`` seconds; the ones deleted."""
    now = time.time() if now is None else now
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in root.iterdir():
            try:
                if entry.is_dir() and not entry.is_symlink() and now - entry.stat().st_mtime > retention:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
            except OSError:
                continue
    return removed


class Workspace:
    """One task's folder and the tools that work in it."""

    def __init__(self, root: Path, limits: WorkspaceLimits):
        self.limits = limits
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.utime(root)  # in use: the retention sweep counts from here
        self.root = Path(os.path.realpath(root))

    @classmethod
    def for_task(cls, home: Path, task: str, limits: WorkspaceLimits) -> Workspace:
        """The workspace of ``task`` (``tasks/X`` or ``X``) under ``home``, created if needed."""
        task_id = _SAFE_ID.sub("_", task.rsplit("/", 1)[-1]) or "task"
        base = workspaces_root(home)
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(base / task_id, limits)

    # --- paths -----------------------------------------------------------------------------

    def resolve(self, relative: Any, *, must_exist: bool = False) -> Path:
        """The path ``relative`` names inside the workspace; WorkspaceError when it leads outside."""
        if not isinstance(relative, str) or not relative.strip():
            raise WorkspaceError("path must be a non-empty relative path such as src/app.py")
        if "\x00" in relative:
            raise WorkspaceError("path must not contain NUL characters")
        pure = Path(relative)
        if pure.is_absolute() or relative.startswith(("/", "\\", "~")):
            raise WorkspaceError(f"path {relative!r} is absolute; paths are relative to the workspace")
        if ".." in pure.parts:
            raise WorkspaceError(f"path {relative!r} contains '..'; paths must stay inside the workspace")
        resolved = Path(os.path.realpath(self.root / pure))
        if resolved != self.root and self.root not in resolved.parents:
            raise WorkspaceError(f"path {relative!r} leads outside the workspace (through a symbolic link)")
        if must_exist and not resolved.exists():
            raise WorkspaceError(f"no file or folder {relative!r} in the workspace")
        return resolved

    def relative(self, path: Path) -> str:
        """``path`` relative to the workspace, with forward slashes."""
        return path.relative_to(self.root).as_posix()

    # --- artifacts -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """(mtime_ns, size) of each regular file, by relative path."""
        seen: dict[str, tuple[int, int]] = {}
        for path in self._files():
            with contextlib.suppress(OSError):
                st = path.lstat()
                seen[self.relative(path)] = (st.st_mtime_ns, st.st_size)
        return seen

    def changed_since(self, before: dict[str, tuple[int, int]]) -> tuple[list[Artifact], list[str]]:
        """The files new or changed since ``before``, as artifacts within the size limit, and those left out."""
        artifacts: list[Artifact] = []
        skipped: list[str] = []
        room = self.limits.max_artifact_bytes
        for name, mark in sorted(self.snapshot().items()):
            if before.get(name) == mark:
                continue
            size = mark[1]
            if size > room:
                skipped.append(name)
                continue
            try:
                content = self._read_regular(self.root / name)
            except OSError:
                skipped.append(name)
                continue
            room -= len(content)
            media = mimetypes.guess_type(name)[0] or (
                "text/plain" if _is_text(content) else "application/octet-stream"
            )
            artifacts.append(Artifact(name=name, content=content, media_type=media))
        return artifacts, skipped

    def _files(self) -> list[Path]:
        found: list[Path] = []
        for folder, dirs, files in os.walk(self.root, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                with contextlib.suppress(OSError):
                    if stat.S_ISREG(path.lstat().st_mode):
                        found.append(path)
                if len(found) >= MAX_SCANNED:
                    return found
        return found

    @staticmethod
    def _read_regular(path: Path) -> bytes:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            return f.read()

    # --- tools -----------------------------------------------------------------------------

    def tools(self) -> list[ClientTool]:
        """list_files, read_file, write_file and run_command over this workspace."""
        path_schema = {"type": "string", "description": "A path relative to the workspace, e.g. src/app.py."}
        return [
            FunctionTool(
                "list_files",
                "List the files in the task's workspace (or one of its folders), with their sizes in bytes.",
                {"type": "object", "properties": {"path": {**path_schema, "default": "."}}},
                self._list_files,
            ),
            FunctionTool(
                "read_file",
                "Read a text file of the task's workspace.",
                {"type": "object", "properties": {"path": path_schema}, "required": ["path"]},
                self._read_file,
            ),
            FunctionTool(
                "write_file",
                "Create or replace a file in the task's workspace (folders are created). "
                "Files written are returned with the task's result.",
                {
                    "type": "object",
                    "properties": {"path": path_schema, "content": {"type": "string"}},
                    "required": ["path", "content"],
                },
                self._write_file,
            ),
            FunctionTool(
                "run_command",
                "Run a command in the task's workspace (its working directory) and get "
                "its exit status and output, e.g. to run tests. `command` is run by /bin/sh -c; or give "
                f"`argv`, a list run without a shell. Killed after {self.limits.command_timeout:g} s.",
                {
                    "type": "object",
                    "properties": {
                        "command": {"type": "string", "description": "A shell command line."},
                        "argv": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "A program and its arguments, run without a shell.",
                        },
                    },
                },
                self._run_command,
            ),
        ]

    async def _list_files(self, arguments: dict[str, Any]) -> ToolOutput:
        raw = arguments.get("path") or "."
        folder = self.root if raw in (".", "./") else self.resolve(raw, must_exist=True)
        if not folder.is_dir():
            raise WorkspaceError(f"{raw!r} is not a folder")
        lines = []
        for path in self._files():
            if folder == self.root or folder in path.parents:
                lines.append(f"{self.relative(path)}\t{path.lstat().st_size}")
                if len(lines) >= MAX_LISTED:
                    lines.append(f"[only the first {MAX_LISTED} files are listed]")
                    break
        return ToolOutput("\n".join(lines) if lines else "(no files)")

    async def _read_file(self, arguments: dict[str, Any]) -> ToolOutput:
        path = self.resolve(arguments.get("path"), must_exist=True)
        if not path.is_file():
            raise WorkspaceError(f"{arguments.get('path')!r} is not a file")
        limit = self.limits.max_output_bytes
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
        text = data[:limit].decode("utf-8", errors="replace")
        if len(data) > limit:
            text += f"\n[cut at {limit} bytes (agents.workspace.max_output_bytes)]"
        return ToolOutput(text)

    async def _write_file(self, arguments: dict[str, Any]) -> ToolOutput:
        content = arguments.get("content")
        if not isinstance(content, str):
            raise WorkspaceError("content must be a string")
        data = content.encode()
        if len(data) > self.limits.max_file_bytes:
            raise WorkspaceError(
                f"content is {len(data)} bytes; the limit is {self.limits.max_file_bytes} "
                "(agents.workspace.max_file_bytes)"
            )
        path = self.resolve(arguments.get("path"))
        if path == self.root or path.is_dir():
            raise WorkspaceError(f"{arguments.get('path')!r} is a folder")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.resolve(self.relative(path))  # a folder made meanwhile must not lead out either
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return ToolOutput(f"wrote {len(data)} bytes to {self.relative(path)}")

    async def _run_command(self, arguments: dict[str, Any]) -> ToolOutput:
        command, argv = arguments.get("command"), arguments.get("argv")
        if isinstance(argv, list) and argv and all(isinstance(p, str) for p in argv):
            args = list(argv)
        elif isinstance(command, str) and command.strip():
            args = ["/bin/sh", "-c", command]  # the model's own command line, passed as one argument
        else:
            raise WorkspaceError(
                "give `command` (a non-empty string) or `argv` (a non-empty list of strings)"
            )
        env = child_environment(os.environ, extra={"HOME": str(self.root), "MAOS_WORKSPACE": str(self.root)})
        limit = self.limits.max_output_bytes
        try:
            done = await run_bounded(
                args, timeout=self.limits.command_timeout, max_output_bytes=limit, cwd=str(self.root), env=env
            )
        except TimeoutError as exc:  # (an OSError too: caught first)
            partial = getattr(exc, "partial", None)
            if partial is None:
                raise
            return ToolOutput(
                f"the command was killed after {self.limits.command_timeout:g} s "
                f"(agents.workspace.command_timeout)\n{_streams(partial.stdout, partial.stderr)}",
                is_error=True,
            )
        except OSError as exc:
            return ToolOutput(f"cannot run {args[0]!r}: {exc}", is_error=True)
        code = done.returncode
        status = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        note = (
            f"\n[output cut at {limit} bytes (agents.workspace.max_output_bytes)]" if done.truncated else ""
        )
        return ToolOutput(f"{status}\n{_streams(done.stdout, done.stderr)}{note}")


def _streams(stdout: str, stderr: str) -> str:
    parts = []
    if stdout:
        parts.append(f"stdout:\n{stdout}")
    if stderr:
        parts.append(f"stderr:\n{stderr}")
    return "\n".join(parts) or "(no output)"


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data
