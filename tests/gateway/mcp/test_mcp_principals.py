"""Who an MCP caller is to the SDK, and the folder its file tools work in: never the same for
two callers, whatever their tenant and user ids hold."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mcp.server.auth.middleware.bearer_auth import authorization_context

from promptline.gateway.mcp_server.http import _sdk_user
from promptline.gateway.mcp_server.service import McpService
from promptline.security.auth import Caller

# Pairs of (tenant, user) that were one principal or one folder once their ids were joined.
ALIKE = [
    (("a/b", "c"), ("a", "b/c")),
    (("t1:x", "y"), ("t1", "x:y")),
    (("a-b", "c"), ("a", "b-c")),
    (("a_b", "c"), ("a-b", "c")),
]


def _caller(ids: tuple[str, str], key_id: str | None = None) -> Caller:
    return Caller(user_id=ids[1], tenant_id=ids[0], role="user", key_id=key_id)


def _service(workspaces: Path) -> McpService:
    # Only what choosing a caller's folder reads of the app.
    app: Any = SimpleNamespace(
        settings=SimpleNamespace(agent=SimpleNamespace(workspace=None)),
        runtime=SimpleNamespace(services=SimpleNamespace(workspaces_dir=workspaces)),
    )
    return McpService(app)


@pytest.mark.parametrize(("first", "second"), ALIKE)
def test_callers_whose_ids_join_alike_are_two_principals_to_the_sdk(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    mine = authorization_context(_sdk_user(_caller(first)))
    theirs = authorization_context(_sdk_user(_caller(second)))

    assert mine != theirs


def test_a_key_is_its_own_principal_apart_from_any_tenant_and_user() -> None:
    with_key = authorization_context(_sdk_user(_caller(("acme", "alice"), key_id="key_1")))
    without = authorization_context(_sdk_user(_caller(("key_1", ""))))

    assert with_key["client_id"] == "key_1"
    assert with_key != without


@pytest.mark.parametrize(("first", "second"), ALIKE)
def test_callers_whose_ids_join_alike_get_two_workspaces(
    tmp_path: Path, first: tuple[str, str], second: tuple[str, str]
) -> None:
    service = _service(tmp_path)

    mine = service._workspace(_caller(first))
    theirs = service._workspace(_caller(second))

    assert mine != theirs
    assert mine.parent == theirs.parent == tmp_path


def test_the_workspace_of_plain_ids_keeps_its_name(tmp_path: Path) -> None:
    workspace = _service(tmp_path)._workspace(_caller(("acme", "alice.smith")))

    assert workspace == tmp_path / "mcp-acme-alice.smith"
