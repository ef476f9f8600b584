"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api import deps
from broker.observability import metrics, readiness
from broker.runtime import Runtime

router = APIRouter(tags=["operations"])


def _monitor(request: Request, runtime: Runtime) -> readiness.EndpointMonitor:
    monitor = getattr(request.app.state, "endpoint_monitor", None)
    if monitor is None:
        monitor = request.app.state.endpoint_monitor = readiness.EndpointMonitor(
            runtime, ttl_seconds=runtime.settings.readiness_cache_seconds,
            timeout_seconds=runtime.settings.readiness_probe_timeout_seconds)
    return monitor


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, runtime: Annotated[Runtime, Depends(deps.runtime)]) -> JSONResponse:
    """Ready when the database answers and the HSM token is logged in (503 otherwise).

    The body also reports each provider's TSA and OCSP, probed in the background; they never make
    the node unready: an outage fails only the requests that need them.
    """
    database = await run_in_threadpool(readiness.check_database, runtime)
    hsm = await run_in_threadpool(readiness.check_hsm, runtime)
    endpoints = await run_in_threadpool(_monitor(request, runtime).report)
    ready = database == readiness.OK and hsm == readiness.OK
    body = {"ready": ready, "checks": {"database": database, "hsm": hsm}, **endpoints}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    """Prometheus text format; summed over the workers in multi-process mode."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
