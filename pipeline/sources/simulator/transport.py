"""An httpx transport that hands requests straight to the service: no socket.

One object serves `httpx.Client` and `httpx.AsyncClient`. A slow reply honours the
client's read timeout as a network would: it stalls at most that long and then
raises `httpx.ReadTimeout`. The async side runs the service in a worker thread so the
event loop stays free while a market part is being built.
"""

from __future__ import annotations

import time

import anyio
import httpx

from pipeline.sources.simulator.protocol import Reply, Service

CLIENT_HOST = "127.0.0.1"


def _read_timeout(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout") or {}
    return timeout.get("read")


def _response(reply: Reply, request: httpx.Request) -> httpx.Response:
    return httpx.Response(reply.status, headers=reply.headers, content=reply.body, request=request)


class SimulatorTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """In-process transport over a `Service`."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a request of a synchronous client."""
        reply = self._service.respond(request.url.path, request.read(), CLIENT_HOST)
        limit = _read_timeout(request)
        if reply.delay_s:
            time.sleep(reply.delay_s if limit is None else min(limit, reply.delay_s))
            if limit is not None and reply.delay_s > limit:
                msg = f"simulated read timeout after {limit} s"
                raise httpx.ReadTimeout(msg, request=request)
        return _response(reply, request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a request of an asynchronous client."""
        body = await request.aread()
        reply = await anyio.to_thread.run_sync(
            self._service.respond, request.url.path, body, CLIENT_HOST
        )
        limit = _read_timeout(request)
        if reply.delay_s:
            await anyio.sleep(reply.delay_s if limit is None else min(limit, reply.delay_s))
            if limit is not None and reply.delay_s > limit:
                msg = f"simulated read timeout after {limit} s"
                raise httpx.ReadTimeout(msg, request=request)
        return _response(reply, request)
