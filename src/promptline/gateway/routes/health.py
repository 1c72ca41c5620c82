"""Liveness and readiness: ``/healthz`` answers while the process serves; ``/readyz`` checks
the database, the event bus and the model providers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from promptline import __version__
from promptline.core.errors import PromptLineError
from promptline.gateway.deps import gateway, own_credential

router = APIRouter(tags=["health"])
_log = logging.getLogger("promptline.gateway")


@router.get(
    "/healthz",
    dependencies=[Depends(own_credential)],
    summary="Liveness: the process serves requests",
)
async def healthz() -> dict[str, Any]:
    """Always 200 while the process is up (no check of its dependencies)."""
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    dependencies=[Depends(own_credential)],
    summary="Readiness: the database, the bus and the providers",
)
async def readyz(request: Request) -> JSONResponse:
    """200 when every check passes, 503 (with what failed) otherwise."""
    app = gateway(request).app
    checks: dict[str, dict[str, Any]] = {}
    try:
        position = await app.events.last_position()
        checks["database"] = {"ok": True, "events": position}
    except Exception as exc:  # the point is to report it, in PromptLine's words
        _log.warning("readiness: the database check failed", exc_info=exc)
        checks["database"] = {"ok": False, "error": _what_failed(exc)}
    subscribers = getattr(app.bus, "subscriber_count", None)
    checks["bus"] = {"ok": True, "subscribers": subscribers}
    try:
        models = app.router.model_ids
        checks["providers"] = {"ok": bool(models), "models": len(models)}
        if not models:
            checks["providers"]["error"] = "no model is configured"
    except Exception as exc:
        checks["providers"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


def _what_failed(exc: Exception) -> str:
    """An error as a client may see it: a PromptLine error's own message, else only its kind
    (a driver's text may quote the database's; the log has it)."""
    if isinstance(exc, PromptLineError):
        return exc.message
    return f"{type(exc).__name__} (see the server log)"
