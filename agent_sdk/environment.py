"""The environment of child processes: an allow-list, never a copy of the parent's.

The control plane's environment may hold ``ANTHROPIC_API_KEY``/``CLAUDE_API_KEY``, the
database URL with its password (``MAOS_DATABASE_PRIMARY_URL``) and other secrets. Agent
processes it launches, and the commands of the ``shell`` agent type, start from
:data:`BASE_VARIABLES` (what programs need to run: ``PATH``, ``HOME``, locale, temporary
folder, Python's search path, CA bundles) and receive only what they need on top:

* a launched agent: its credential (``MAOS_TOKEN``), ``MAOS_HOME``, the non-secret ``MAOS_*``
  settings (never ``database.*``, ``redis.*`` or secret-looking ones), and the variables its
  agent type names in :attr:`agent_sdk.AgentTypeSpec.environment` (a Claude type: its model key);
* a shell command: the base variables, the type's ``parameters.env`` and ``MAOS_TASK`` & co.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Variables every child process keeps: none of them is a secret.
BASE_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "TEMP",
        "TMP",
        "NO_COLOR",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "SYSTEMROOT",
        "WINDIR",
        "COMSPEC",
        "PATHEXT",  # Windows needs these to start processes at all
    }
)
#: Prefixes of variables every child keeps (locale categories).
BASE_PREFIXES = ("LC_",)


def base_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` on the allow-list (:data:`BASE_VARIABLES`, ``LC_*``)."""
    return {k: v for k, v in environ.items() if k in BASE_VARIABLES or k.startswith(BASE_PREFIXES)}


def child_environment(
    environ: Mapping[str, str], passed: Iterable[str] = (), extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The allow-listed part of ``environ``, plus the variables named in ``passed``, plus ``extra``."""
    env = base_environment(environ)
    env.update({name: environ[name] for name in passed if name in environ})
    env.update(extra or {})
    return env
