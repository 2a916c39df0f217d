"""A small asyncio HTTP/1.1 client with kept-alive connections, for the load generator.

    pool = Http1Pool("http://127.0.0.1:8000", size=32, headers={"authorization": "Bearer …"})
    status, body = await pool.post("/v2/models/m/infer", b'{"inputs": …}')
    await pool.close()

Why not httpx: a load generator must not be the bottleneck. With 32 concurrent requests
httpx's async client spends milliseconds per request in its pool on two shared cores, capping
the load at a fraction of what the server takes; a bare connection per outstanding request
costs ~0.1 ms. Supports Content-Length and chunked responses, ``Connection: close``, and one
retry when a kept-alive connection turns out to have been closed by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as we know it."""


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send one request, read its response: (status, body, keep-alive)."""
        self.writer.write(request)
        await self.writer.drain()
        line = await self.reader.readline()
        if not line:
            raise ConnectionResetError("the server closed the connection")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {line[:80]!r}")
        status = int(parts[1])
        headers: dict[bytes, bytes] = {}
        while (h := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = h.partition(b":")
            headers[name.strip().lower()] = value.strip()
        keep = parts[0] == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = await self._chunked()
        elif b"content-length" in headers:
            body = await self.reader.readexactly(int(headers[b"content-length"]))
        else:
            body, keep = await self.reader.read(), False
        self.used = True
        return status, body, keep

    async def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while await self.reader.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        self.writer.close()


class Http1Pool:
    """At most ``size`` connections, each carrying one request at a time."""

    def __init__(
        self, base_url: str, size: int, headers: dict[str, str] | None = None, timeout: float = 30
    ) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.prefix = parts.path.rstrip("/")
        host_header = parts.netloc.encode()
        extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in (headers or {}).items())
        self._head = b"Host: " + host_header + b"\r\n" + extra
        self.timeout = timeout
        self._idle: list[_Conn] = []
        self._gate = asyncio.Semaphore(size)

    async def _connect(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        return _Conn(reader, writer)

    def _request(self, path: str, body: bytes, content_type: str) -> bytes:
        return (
            f"POST {self.prefix}{path} HTTP/1.1\r\n".encode()
            + self._head
            + f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    async def post(
        self, path: str, body: bytes, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        request = self._request(path, body, content_type)
        async with self._gate:
            for attempt in (0, 1):
                conn = self._idle.pop() if self._idle else await self._connect()
                try:
                    status, data, keep = await asyncio.wait_for(
                        conn.exchange(request), self.timeout
                    )
                except (ConnectionResetError, asyncio.IncompleteReadError, BrokenPipeError):
                    conn.close()
                    if attempt == 0 and conn.used:  # kept alive too long: the server left
                        continue
                    raise
                except BaseException:
                    conn.close()
                    raise
                if keep:
                    self._idle.append(conn)
                else:
                    conn.close()
                return status, data
        raise AssertionError("unreachable")

    async def close(self) -> None:
        while self._idle:
            conn = self._idle.pop()
            conn.close()
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()
