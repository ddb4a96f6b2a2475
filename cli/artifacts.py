"""Writing a task's artifacts into a folder (``maos task results ID --artifacts DIR``), safely.

Artifact names come from agents, so they are untrusted: a name is a relative path of plain parts
(no absolute path, no ``..``, no empty or hidden-device parts, no NUL); each file lands inside the
folder (a symbolic link already in the folder cannot redirect it); an artifact named twice (by two
steps) keeps the last one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

#: Longest artifact name written, in characters.
MAX_NAME = 255


@dataclass
class Written:
    """What :func:`write_artifacts` did: files written, and artifacts left out with why."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def safe_relative(name: str) -> PurePosixPath | None:
    """``name`` as a safe relative path, or None when it is not one."""
    if not name or len(name) > MAX_NAME or "\x00" in name or "\\" in name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts) or name.startswith("~"):
        return None
    return path


def write_artifacts(artifacts: Iterable[Any], folder: Path) -> Written:
    """Write each artifact (``name``, ``content``, ``size_bytes``) under ``folder``, creating it."""
    done = Written()
    latest: dict[str, Any] = {}
    for artifact in artifacts:
        latest[artifact.name] = artifact
    folder.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(folder))
    for name, artifact in latest.items():
        relative = safe_relative(name)
        if relative is None:
            done.skipped.append((name, "not a safe relative file name"))
            continue
        if not artifact.content and artifact.size_bytes:
            done.skipped.append(
                (name, f"its content was left out of the response (too large); {artifact.uri or 'no uri'}")
            )
            continue
        target = root.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        parent = Path(os.path.realpath(target.parent))
        if parent != root and root not in parent.parents:
            done.skipped.append((name, "leads outside the folder"))
            continue
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            done.skipped.append((name, f"cannot write it: {exc.strerror or exc}"))
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(artifact.content)
        done.files.append(target)
    return done
