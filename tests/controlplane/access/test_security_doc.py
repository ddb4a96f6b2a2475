"""docs/security.md states the permission of every RPC the server serves, as the server requires it.

The authorization matrix, the list of permissions and the built-in roles are
read from the page and compared with :mod:`controlplane.access.permissions`,
so a method added, or a permission changed, without the page fails here.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import agent_sdk.proto.maos.v1 as protos
from controlplane.access.permissions import BUILTIN_ROLES, KNOWN_PERMISSIONS, needed, valid_permission
from controlplane.api.server import SERVICE_NAMES

DOC = Path(__file__).resolve().parents[3] / "docs" / "security.md"
_ROW = re.compile(r"^\| `([A-Za-z]+)\.([A-Za-z]+)` \| `([^`]+)` \| (.+) \|$")


def _served_methods() -> dict[str, str]:
    """``Service.Method`` -> the full gRPC method name, for every service the server registers."""
    found = {}
    for module in pkgutil.iter_modules(protos.__path__):
        if not module.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(f"{protos.__name__}.{module.name}").DESCRIPTOR
        for service in descriptor.services_by_name.values():
            if service.full_name in SERVICE_NAMES:
                for method in service.methods:
                    found[f"{service.name}.{method.name}"] = f"/{service.full_name}/{method.name}"
    return found


def _matrix() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            name = f"{match.group(1)}.{match.group(2)}"
            assert name not in rows, f"docs/security.md lists {name} twice"
            rows[name] = (match.group(3), match.group(4).strip())
    return rows


def test_the_matrix_lists_every_served_rpc_with_the_permission_the_server_requires() -> None:
    served, rows = _served_methods(), _matrix()
    assert len(served) > 40  # the services were found
    assert set(rows) == set(served), (
        f"missing from docs/security.md: {sorted(set(served) - set(rows))}; "
        f"not served: {sorted(set(rows) - set(served))}"
    )
    for name, method in served.items():
        permission, sees = rows[name]
        assert permission == needed(method), (
            f"{name}: the page says {permission}, the server needs {needed(method)}"
        )
        assert sees, f"{name}: say what the caller sees of others' objects (or '-')"


def test_every_permission_and_builtin_role_is_documented() -> None:
    text = DOC.read_text()
    for permission in KNOWN_PERMISSIONS:
        assert f"| `{permission}` |" in text, f"docs/security.md does not explain {permission}"
    for role, (_, permissions) in BUILTIN_ROLES.items():
        assert all(valid_permission(p) for p in permissions), f"{role} holds an unknown permission"
        row = next((line for line in text.splitlines() if line.startswith(f"| {role} |")), "")
        assert row, f"docs/security.md does not list the role {role}"
        listed = set(re.findall(r"`([^`]+)`", row))
        if role == "developer":  # "viewer's, and ..."
            listed |= set(BUILTIN_ROLES["viewer"][1])
        assert listed == set(permissions), (
            f"{role}: the page lists {sorted(listed)}, the role has {permissions}"
        )
