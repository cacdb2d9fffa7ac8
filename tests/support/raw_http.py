"""HTTP/1.1 over a plain socket: what httpx refuses to send (100 KB headers, invalid
bytes, requests that never end), and requests pipelined on one connection."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RawAnswer:
    status: int | None
    """The status code, or None when the server closed or reset without answering."""
    head: bytes
    seconds: float


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the server on 127.0.0.1 from the loopback address ``source``."""
    return socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )


def request_bytes(
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    keep_alive: bool = False,
) -> bytes:
    """An HTTP/1.1 request, headers as given (bytes, unchecked); ``Connection: close``
    unless ``keep_alive`` (for :func:`pipelined`)."""
    lines = [f"{method} {path} HTTP/1.1".encode("ascii"), b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    if body or keep_alive:
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    if not keep_alive:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (or resets, or ``limit`` bytes)."""
    received = b""
    with contextlib.suppress(OSError):  # a reset or a timeout ends the answer too
        while len(received) <= limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def raw_request(
    port: int, data: bytes, *, source: str = "127.0.0.1", timeout: float = 10.0
) -> RawAnswer:
    """Send ``data`` as is, read until the server closes; the status line it answered."""
    started = time.monotonic()
    with connect(port, source, timeout) as sock:
        # The server may answer and close before reading all of a huge request.
        with contextlib.suppress(OSError):
            sock.sendall(data)
        received = read_until_closed(sock)
    match = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    return RawAnswer(
        int(match.group(1)) if match else None, received[:2048], time.monotonic() - started
    )


def connection_is_open(sock: socket.socket) -> bool:
    """True when the server has neither answered nor closed ``sock`` (non-blocking check)."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False  # an answer or the end of the stream: no longer waiting


def pipelined(
    port: int, requests: list[bytes], *, source: str = "127.0.0.1", timeout: float = 60.0
) -> list[RawResponse]:
    """Send ``requests`` back to back on one keep-alive connection (HTTP/1.1 pipelining)
    and read their answers in order: thousands a second, where a client library spends
    more time than the server."""
    with connect(port, source, timeout) as sock:
        sock.sendall(b"".join(requests))
        buffer = b""
        answers: list[RawResponse] = []
        while len(answers) < len(requests):
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                buffer += _receive(sock, f"connection closed after {len(answers)} answers")
                continue
            lines = buffer[:head_end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            end = head_end + 4 + int(headers.get("content-length", "0"))
            while len(buffer) < end:
                buffer += _receive(sock, "connection closed in the middle of an answer")
            answers.append(
                RawResponse(int(lines[0].split()[1]), headers, buffer[head_end + 4 : end])
            )
            buffer = buffer[end:]
        return answers


def _receive(sock: socket.socket, closed: str) -> bytes:
    chunk = sock.recv(1 << 16)
    assert chunk, closed
    return chunk
