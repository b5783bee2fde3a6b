"""A lean HTTP/1.1 keep-alive client for the load generator.

httpx costs about 4 ms of CPU per request here, more than the server spends answering
it, so on a 2-core machine it would measure itself. This client does only what the
load generator needs: one request at a time per connection, Content-Length or chunked
bodies, and the small slice of httpx's interface that bench/loadgen.py uses.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class TransportError(Exception):
    """The connection failed; the caller may re-send (POSTs carry idempotency keys)."""


class _Url:
    def __init__(self, path: str) -> None:
        self.path = path


class _Request:
    def __init__(self, method: str, path: str) -> None:
        self.method = method
        self.url = _Url(path.split("?", 1)[0])


class Response:
    def __init__(
        self, method: str, path: str, status_code: int, headers: dict[str, str], content: bytes
    ) -> None:
        self.request = _Request(method, path)
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class LeanClient:
    """Keep-alive connections, `connections` per origin; absolute URLs name their origin."""

    def __init__(self, base_url: str, connections: int, timeout: float = 120.0) -> None:
        self._base = _origin(base_url) if base_url else None
        self._connections = connections
        self._timeout = timeout
        self._pools: dict[
            tuple[str, int], asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]
        ] = {}

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pool in self._pools.values():
            while not pool.empty():
                connection = pool.get_nowait()
                if connection is not None:
                    connection[1].close()

    def _pool(
        self, origin: tuple[str, int]
    ) -> asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
        if origin not in self._pools:
            pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.Queue()
            for _ in range(self._connections):
                pool.put_nowait(None)  # opened on first use
            self._pools[origin] = pool
        return self._pools[origin]

    async def request(
        self, method: str, url: str, *, content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        if url.startswith(("http://", "https://")):
            parts = urlsplit(url)
            origin = _origin(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            assert self._base is not None, "a relative URL needs a base URL"
            origin, path = self._base, url
        pool = self._pool(origin)
        connection = await pool.get()
        try:
            if connection is None:
                connection = await asyncio.open_connection(*origin)
            response = await asyncio.wait_for(
                self._exchange(connection, origin, method, path, content, headers or {}), self._timeout
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as error:
            if connection is not None:
                connection[1].close()
            pool.put_nowait(None)
            raise TransportError(f"{type(error).__name__}: {error}") from error
        pool.put_nowait(None if response.headers.get("connection") == "close" else connection)
        return response

    async def _exchange(
        self,
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        origin: tuple[str, int],
        method: str,
        path: str,
        content: bytes | None,
        headers: dict[str, str],
    ) -> Response:
        reader, writer = connection
        body = content or b""
        head = [
            f"{method} {path} HTTP/1.1".encode(),
            f"host: {origin[0]}:{origin[1]}".encode(),
            f"content-length: {len(body)}".encode(),
        ]
        head += [f"{name}: {value}".encode() for name, value in headers.items()]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        status_line, *header_lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        received: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                received[name.strip().lower()] = value.strip()
        if received.get("transfer-encoding") == "chunked":
            chunks = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append(await reader.readexactly(size + 2))
            await reader.readuntil(b"\r\n")
            payload = b"".join(chunk[:-2] for chunk in chunks)
        else:
            payload = await reader.readexactly(int(received.get("content-length", "0")))
        return Response(method, path, status, received, payload)


def _origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80
