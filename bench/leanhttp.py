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
    def __init__(self, base_url: str, connections: int, timeout: float = 120.0) -> None:
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._authority = f"{self._host}:{self._port}".encode()
        self._timeout = timeout
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.Queue()
        for _ in range(connections):
            self._idle.put_nowait(None)  # opened on first use

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if connection is not None:
                connection[1].close()

    async def request(
        self, method: str, path: str, *, content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        connection = await self._idle.get()
        try:
            if connection is None:
                connection = await asyncio.open_connection(self._host, self._port)
            response = await asyncio.wait_for(
                self._exchange(connection, method, path, content, headers or {}), self._timeout
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as error:
            if connection is not None:
                connection[1].close()
            self._idle.put_nowait(None)
            raise TransportError(f"{type(error).__name__}: {error}") from error
        self._idle.put_nowait(None if response.headers.get("connection") == "close" else connection)
        return response

    async def _exchange(
        self,
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        method: str,
        path: str,
        content: bytes | None,
        headers: dict[str, str],
    ) -> Response:
        reader, writer = connection
        body = content or b""
        head = [
            f"{method} {path} HTTP/1.1".encode(),
            b"host: " + self._authority,
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
