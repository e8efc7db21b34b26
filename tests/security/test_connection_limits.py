"""Connection limits over real sockets: head size, head and body deadlines, idle keep-alive, connection cap."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.security.conftest import TOKEN, running_app, settings_text
from tests.security.test_metrics import sample_value

LIMITS = """
max_header_bytes = 4096
header_timeout = 1.0
body_timeout = 1.0
keepalive_timeout = 1
max_connections = 40
"""
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
def base(serve_app) -> str:
    return str(serve_app(settings_text(server_extra=LIMITS)))


@contextmanager
def connection(base: str, timeout: float = 10.0) -> Iterator[socket.socket]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        yield sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (fails on the socket's timeout)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def refused(base: str, reason: str) -> float:
    return sample_value(
        httpx.get(f"{base}/metrics").text, "doopage_connections_refused_total", f'{{reason="{reason}"}}'
    )


def test_headers_over_the_limit_get_431_and_the_connection_closes(base: str) -> None:
    with connection(base) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in answer
    with connection(base) as sock:
        sock.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 414 ")
    with connection(base) as sock:  # many small headers count together
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: %d\r\n" % (n, n) for n in range(600)) + b"\r\n"
        )
        assert read_until_closed(sock).startswith(b"HTTP/1.1 431 ")
    assert refused(base, "header_too_large") == 3
    assert httpx.get(f"{base}/healthz", headers={"x-fine": "b" * 3000}).status_code == 200


def pour(sock: socket.socket, limit: int) -> int:
    """Send header bytes until the server stops taking them (the send times out) or ``limit`` is sent."""
    sent = 0
    try:
        while sent < limit:
            sock.sendall(b"a" * 65536)
            sent += 65536
    except TimeoutError:
        pass
    return sent


def test_endless_headers_are_not_buffered(base: str) -> None:
    """Headers that never end: the server stops reading once over the limit, answers 431, closes."""
    with connection(base, timeout=0.5) as sock:  # shorter than the linger: the answer is read before it ends
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Endless: ")
        assert pour(sock, 256 * 1024 * 1024) < 64 * 1024 * 1024
        assert sock.recv(65536).startswith(b"HTTP/1.1 431 ")


def test_silent_half_sent_and_trickling_connections_are_closed_while_others_are_served(base: str) -> None:
    stop = threading.Event()

    def trickle(sock: socket.socket, data: bytes) -> None:
        for byte in data:
            if stop.is_set():
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.2)

    with ExitStack() as stack:
        silent = [stack.enter_context(connection(base)) for _ in range(5)]
        half_head = [stack.enter_context(connection(base)) for _ in range(5)]
        for sock in half_head:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: te")
        half_body = [stack.enter_context(connection(base)) for _ in range(5)]
        for sock in half_body:
            sock.sendall(
                f"POST /webhooks/doopage/{TOKEN} HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n{{".encode()
            )
        trickling = [stack.enter_context(connection(base)) for _ in range(20)]
        threads = [threading.Thread(target=trickle, args=(sock, HEALTHZ * 10)) for sock in trickling]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        try:
            # Others are served meanwhile.
            with httpx.Client(base_url=base) as http:
                for _ in range(5):
                    assert http.get("/healthz").status_code == 200
            answers = [read_until_closed(sock) for sock in silent + half_head + half_body + trickling]
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    assert answers[:5] == [b""] * 5  # a connection that said nothing is closed without an answer
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers[5:])
    assert elapsed < 15  # limits of 1 s, plus the 1 s a refused connection lingers, on a busy machine
    assert refused(base, "header_timeout") == 30
    assert refused(base, "body_timeout") == 5


def test_idle_keep_alive_connections_are_closed(base: str) -> None:
    with connection(base) as sock:
        sock.sendall(HEALTHZ)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        assert time.monotonic() - started < 4


def test_requests_beyond_the_connection_cap_get_503(serve_app) -> None:
    # Generous time limits here: only the number of connections should matter, however slow the machine.
    base = serve_app(
        settings_text(server_extra="max_connections = 40\nheader_timeout = 60\nkeepalive_timeout = 60")
    )
    with ExitStack() as stack:
        statuses = []
        for _ in range(45):  # each answered before the next opens, the earlier ones kept open
            sock = stack.enter_context(connection(base))
            sock.sendall(HEALTHZ)
            statuses.append(sock.recv(65536).split(b" ", 2)[1])
    assert statuses == [b"200"] * 40 + [b"503"] * 5


@pytest.fixture(scope="module")
def small_heads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One app with a 2 KiB head limit for a whole module."""
    with running_app(
        tmp_path_factory.mktemp("heads"), settings_text(server_extra="max_header_bytes = 2048")
    ) as base:
        yield base


@example(pad=2022, cuts=[2060])  # the head within the limit, its first part over it in raw bytes
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pad=st.integers(1990, 2060), cuts=st.lists(st.integers(1, 2100), max_size=5))  # around the limit
def test_where_the_network_splits_a_request_never_decides_its_fate(
    small_heads: str, pad: int, cuts: list[int]
) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * pad + b"\r\n\r\n"
    parsed = len(b"/healthz") + len(b"host") + len(b"t") + 4 + len(b"x-pad") + pad + 4
    expected = b"200" if parsed <= 2048 else b"431"
    with connection(small_heads) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = 0
        for cut in [*sorted(set(cuts)), len(request)]:
            if cut > start:
                sock.sendall(request[start:cut])
                start = cut
                time.sleep(0.001)
        assert sock.recv(65536).split(b" ", 2)[1] == expected
