"""docs/roles.md must say what the code does: its tables are compared with roles.py and the views.

On a mismatch the failure message prints the rows the code implies, ready to paste into the page.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from django.urls import resolve

from apps.accounts import scopes
from apps.tenants.roles import PERM_SCOPE, ROLE_PERMISSIONS, Perm, Role, grantable_scopes

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROLES_MD = DOCS / "roles.md"
ROLE_ORDER = [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.BILLING, Role.VIEWER]
YES, NO = "✓", "—"


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every pipe table of a markdown page, as rows of stripped cells (header first, separator dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _table_with_header(first_cells: list[str]) -> list[list[str]]:
    for table in _tables(ROLES_MD.read_text()):
        if table[0][: len(first_cells)] == first_cells:
            return table
    raise AssertionError(f"docs/roles.md has no table starting with {first_cells}")


def _code(cell: str) -> str:
    """The text inside the first backticks of a cell."""
    match = re.search(r"`([^`]+)`", cell)
    assert match, f"expected a `code` value in {cell!r}"
    return match.group(1)


def _expected_matrix_rows() -> str:
    lines = []
    for perm in Perm:
        marks = " | ".join(YES if perm in ROLE_PERMISSIONS[role] else NO for role in ROLE_ORDER)
        lines.append(f"| `{perm.value}` | ... | `{PERM_SCOPE[perm]}` | {marks} |")
    return "\n".join(lines)


def test_the_roles_matrix_matches_role_permissions() -> None:
    table = _table_with_header(["permission", "allows", "scope"])
    header, rows = table[0], table[1:]
    assert header[3:] == [role.value for role in ROLE_ORDER]
    assert set(ROLE_ORDER) == set(Role)

    documented: dict[str, tuple[str, frozenset[str]]] = {}
    for row in rows:
        assert len(row) == len(header), f"malformed row {row}"
        assert all(mark in (YES, NO) for mark in row[3:]), f"use {YES} or {NO} in {row}"
        perm = _code(row[0])
        assert perm not in documented, f"{perm} is listed twice"
        granted = frozenset(role.value for role, mark in zip(ROLE_ORDER, row[3:], strict=True) if mark == YES)
        documented[perm] = (_code(row[2]), granted)

    expected = {
        perm.value: (PERM_SCOPE[perm], frozenset(r.value for r in Role if perm in ROLE_PERMISSIONS[r]))
        for perm in Perm
    }
    assert documented == expected, "docs/roles.md is out of date; the code says:\n" + _expected_matrix_rows()


def test_the_grantable_scopes_table_matches_the_code() -> None:
    table = _table_with_header(["role", "grantable scopes"])
    documented = {row[0]: set(re.findall(r"`([^`]+)`", row[1])) for row in table[1:]}
    expected = {role.value: set(grantable_scopes(role)) for role in Role}
    assert documented == expected


def test_the_scopes_table_lists_every_scope_and_its_implications() -> None:
    table = _table_with_header(["scope", "grants", "implies"])
    documented = {_code(row[0]): set(re.findall(r"`([^`]+)`", row[2])) for row in table[1:]}
    expected = {scope: set(scopes.expand([scope])) - {scope} for scope in scopes.ALL_SCOPES}
    assert documented == expected


def _endpoint_rows() -> list[tuple[str, str, str]]:
    table = _table_with_header(["method", "path", "permission"])
    return [(_code(row[0]), _code(row[1]), row[2]) for row in table[1:]]


def _concrete(path: str) -> str:
    return re.sub(r"\{id\}", str(uuid.uuid4()), path.replace("{tenant_slug}", "acme"))


@pytest.mark.parametrize(("method", "path", "permission"), _endpoint_rows())
def test_each_documented_endpoint_needs_the_documented_permission(
    method: str, path: str, permission: str
) -> None:
    view_class = resolve(_concrete(path)).func.view_class  # type: ignore[attr-defined]
    assert hasattr(view_class, method.lower()), f"{path} has no {method} handler"
    permission_map = getattr(view_class, "permission_map", {})
    if path.startswith("/api/v1/tenants/{tenant_slug}"):
        # The first permission named in the cell is the one the view checks for every caller.
        assert permission_map.get(method) == Perm(_code(permission)), (
            f"{method} {path}: the view needs {permission_map.get(method)}, the doc says {permission}"
        )
    else:
        assert method not in permission_map
        assert permission.startswith("signed in")


def test_every_permission_appears_in_the_roles_page() -> None:
    text = ROLES_MD.read_text()
    missing = [perm.value for perm in Perm if f"`{perm.value}`" not in text]
    assert missing == []
