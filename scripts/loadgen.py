"""A small HTTP/1.1 load generator shared by the benchmark scripts.

:func:`run_load` keeps ``connections`` keep-alive connections busy for a while, each sending one request
after another (a closed loop), and records every answer's status and latency; :func:`send_each` sends a
given list of bodies once each, optionally on a fixed schedule, and records every body's outcome;
:func:`send_until_acknowledged` does the same but delivers a refused or failed body again, as a webhook
sender that retries does; :func:`wait_answering` waits for a server a benchmark started. It speaks just enough HTTP/1.1 for our
own servers (Content-Length bodies), which keeps the client far cheaper per request than the server it
measures: with two cores, a heavyweight client would measure itself.

Use it only against servers on this machine (loopback).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

BodyFactory = Callable[[int], bytes]


@dataclass
class LoadResult:
    """What one load run saw."""

    seconds: float
    latencies: list[float] = field(default_factory=list)  # of 2xx answers, in seconds
    statuses: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0

    @property
    def acknowledged(self) -> int:
        """Requests answered with a 2xx status."""
        return len(self.latencies)

    @property
    def per_second(self) -> float:
        """Acknowledged requests per second."""
        return self.acknowledged / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile (0-100) of acknowledgement latency, in milliseconds."""
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=1000)[round(q * 10) - 1] * 1000

    def merge(self, other: LoadResult) -> LoadResult:
        """Both runs as one (durations add up)."""
        statuses = dict(self.statuses)
        for status, count in other.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
        return LoadResult(
            seconds=self.seconds + other.seconds,
            latencies=self.latencies + other.latencies,
            statuses=statuses,
            transport_errors=self.transport_errors + other.transport_errors,
        )


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    """One POST request with a JSON body, keep-alive."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def run_load(
    host: str,
    port: int,
    path: str,
    bodies: BodyFactory,
    counter: itertools.count[int],
    connections: int,
    seconds: float,
    rate: float | None = None,
) -> LoadResult:
    """Drive ``path`` with ``connections`` closed-loop connections for ``seconds``.

    ``bodies(n)`` makes the n-th body, n taken from ``counter`` so runs can share one sequence. With
    ``rate`` (requests per second in all) each connection paces itself instead of sending flat out.
    """
    result = LoadResult(seconds=seconds)
    deadline = time.perf_counter() + seconds
    interval = connections / rate if rate else 0.0

    async def one_connection(offset: float) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            result.transport_errors += 1
            return
        next_send = time.perf_counter() + offset
        try:
            while time.perf_counter() < deadline:
                if interval:
                    await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
                    next_send += interval
                started = time.perf_counter()
                writer.write(request_bytes(host, port, path, bodies(next(counter))))
                status = await read_response(reader)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    result.latencies.append(time.perf_counter() - started)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.transport_errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(one_connection(i * interval / connections) for i in range(connections)))
    return result


@dataclass
class Delivery:
    """One body sent by :func:`send_each`: when it went out and what came back (times from perf_counter)."""

    index: int
    sent_at: float = float("nan")
    acked_at: float = float("nan")
    status: int = 0  # 0: no answer (the connection failed first)
    attempts: int = 0  # sends (more than one with send_until_acknowledged's retries)

    @property
    def acknowledged(self) -> bool:
        """Answered with a 2xx status."""
        return 200 <= self.status < 300


@dataclass
class SendResult:
    """What :func:`send_each` saw, one :class:`Delivery` per body."""

    seconds: float
    deliveries: list[Delivery]

    def acknowledged(self) -> list[int]:
        """Indexes of the bodies answered with a 2xx status."""
        return [d.index for d in self.deliveries if d.acknowledged]

    def load_result(self) -> LoadResult:
        """The same run as a :class:`LoadResult` (latencies of the acknowledged, counts by status)."""
        statuses: dict[int, int] = {}
        for d in self.deliveries:
            if d.status:
                statuses[d.status] = statuses.get(d.status, 0) + 1
        return LoadResult(
            seconds=self.seconds,
            latencies=[d.acked_at - d.sent_at for d in self.deliveries if d.acknowledged],
            statuses=statuses,
            transport_errors=sum(1 for d in self.deliveries if not math.isnan(d.sent_at) and not d.status),
        )


async def send_each(
    host: str,
    port: int,
    path: str,
    bodies: Sequence[bytes],
    connections: int,
    rate: float | None = None,
    on_ack: Callable[[Delivery], None] | None = None,
) -> SendResult:
    """POST every body once, in order, over ``connections`` keep-alive connections; record each outcome.

    The connections take the next unsent body as they free up, so the bodies leave in order but their
    answers may come back in any order. With ``rate`` (requests per second in all) sends follow a fixed
    schedule, body i at ``i / rate`` seconds, whatever the answers' latency (an open loop, as webhooks
    arrive), as long as enough connections are free. A connection that fails (the server died) stops; the
    bodies it did not send stay unsent (``status`` 0, ``sent_at`` NaN). ``on_ack`` is called with each
    acknowledged delivery as it comes in.
    """
    deliveries = [Delivery(i) for i in range(len(bodies))]
    cursor = iter(range(len(bodies)))
    start = time.perf_counter()

    async def one_connection() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return
        try:
            for i in cursor:
                delivery = deliveries[i]
                if rate:
                    await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                delivery.sent_at = time.perf_counter()
                writer.write(request_bytes(host, port, path, bodies[i]))
                delivery.status = await read_response(reader)
                delivery.acked_at = time.perf_counter()
                if on_ack is not None and delivery.acknowledged:
                    on_ack(delivery)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return SendResult(seconds=time.perf_counter() - start, deliveries=deliveries)


# Answers a sender delivers again later: the server is busy or unavailable, or timed out.
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
ANSWER_TIMEOUT_S = 10.0


async def send_until_acknowledged(
    host: str,
    port: int,
    path: str,
    bodies: Sequence[bytes],
    connections: int,
    rate: float,
    retry_seconds: float = 0.5,
    stop_at: float = math.inf,
) -> SendResult:
    """POST every body on a fixed schedule (body i at ``i / rate`` seconds) and deliver it again, after
    ``retry_seconds``, as long as it is refused with a retryable status or the connection fails (the
    server is down or restarting), as a webhook sender that retries does; each delivery records its last
    answer and how many sends it took. A body still undelivered at ``stop_at`` (perf_counter) is given up.
    """
    deliveries = [Delivery(i) for i in range(len(bodies))]
    cursor = iter(range(len(bodies)))
    start = time.perf_counter()

    async def deliver(
        i: int, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Send body i until it is answered for good; the connection to go on with."""
        delivery = deliveries[i]
        while time.perf_counter() < stop_at:
            try:
                if connection is None:
                    connection = await asyncio.open_connection(host, port)
                reader, writer = connection
                delivery.attempts += 1
                delivery.sent_at = time.perf_counter()
                writer.write(request_bytes(host, port, path, bodies[i]))
                delivery.status = await asyncio.wait_for(read_response(reader), ANSWER_TIMEOUT_S)
                delivery.acked_at = time.perf_counter()
                if delivery.status not in RETRIED_STATUSES:
                    return connection
            except (OSError, asyncio.IncompleteReadError, ValueError):  # TimeoutError is an OSError
                delivery.status = 0
                if connection is not None:
                    connection[1].close()
                connection = None
            await asyncio.sleep(retry_seconds)
        return connection

    async def one_connection() -> None:
        connection = None
        for i in cursor:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            connection = await deliver(i, connection)
        if connection is not None:
            connection[1].close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return SendResult(seconds=time.perf_counter() - start, deliveries=deliveries)


def customer_event(n: int) -> bytes:
    """The n-th distinct customer_updated event (a new dedup key every time)."""
    return json.dumps(
        {
            "company_id": 1,
            "event_type": "customer_updated",
            "timestamp": 1_700_000_000_000 + n,
            "data": {"customer": {"id": n % 5000 + 1, "name": f"Khách hàng {n}"}},
        },
        ensure_ascii=False,
    ).encode()


def created_event(n: int) -> bytes:
    """The n-th distinct customer_created event: a new customer (id n + 1) every time."""
    return json.dumps(
        {
            "company_id": 1,
            "event_type": "customer_created",
            "timestamp": 1_700_000_000_000 + n,
            "data": {"customer": {"id": n + 1, "name": f"Khách hàng {n}"}},
        },
        ensure_ascii=False,
    ).encode()


def wait_answering(port: int, process: subprocess.Popen[bytes], path: str = "/healthz") -> None:
    """Wait until the server ``process`` started answers ``path`` on ``port`` (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server on port {port} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the server on port {port} did not answer {path} within 30 s")
