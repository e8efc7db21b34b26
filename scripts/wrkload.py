"""HTTP load with wrk (the Debian package), and the tally the benchmarks print from it.

:func:`run_wrk` drives a webhook URL with ``wrk`` for a whole number of seconds, through a generated Lua
script that POSTs a valid DooPage customer event whose number ``n`` is distinct for every request (its
timestamp and name carry ``n``, so no two bodies are duplicates of each other), counts the 2xx answers,
and prints wrk's latency histogram, which is read back into a :class:`Tally`. Successive runs against one
server take their numbers from one :class:`Numbering`, so no run repeats an earlier run's events.

A :class:`Tally` is also made from the Python generator's :class:`~loadgen.LoadResult`
(:func:`tally_of`), so both generators' results are added up and printed the same way.

Use it only against servers on this machine (loopback).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from loadgen import LoadResult

BASE_MS: Final = 1_700_000_000_000

# The request numbers of thread t are offset + t, offset + threads + t, ...; `done` prints the counts
# of every thread and wrk's latency histogram (microseconds: value and count per distinct value).
LUA_TEMPLATE: Final = """
local path = "{path}"
local kind = "{kind}"
local customers = {customers}
local thread_count = {threads}
local threads = {{}}

function setup(thread)
  thread:set("thread_no", #threads)
  table.insert(threads, thread)
end

function init(args)
  offset = tonumber(args[1])
  sent = 0
  acked = 0
  refused = 0
end

function request()
  local n = offset + sent * thread_count + thread_no
  sent = sent + 1
  local customer = n + 1
  if customers > 0 then customer = n % customers + 1 end
  local body = string.format(
    '{{"company_id":1,"event_type":"%s","timestamp":%.0f,"data":{{"customer":{{"id":%.0f,"name":"Khách hàng %.0f"}}}}}}',
    kind, {base_ms} + n, customer, n)
  return wrk.format("POST", path, {{["Content-Type"] = "application/json"}}, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then acked = acked + 1 else refused = refused + 1 end
end

function done(summary, latency, requests)
  local ok, bad, most = 0, 0, 0
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("acked")
    bad = bad + thread:get("refused")
    most = math.max(most, thread:get("sent"))
  end
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %.0f %d\\n", ok, bad, most, summary.duration,
    e.connect + e.read + e.write + e.timeout))
  for i = 1, #latency do
    local value, count = latency(i)
    io.write(string.format("LAT %d %d\\n", value, count))
  end
end
"""


def have_wrk() -> bool:
    """Whether ``wrk`` is on PATH."""
    return shutil.which("wrk") is not None


@dataclass
class Tally:
    """What one or more load runs saw: acknowledgements, failures, and the latency histogram."""

    seconds: float = 0.0
    acknowledged: int = 0  # answers with a 2xx status
    errors: int = 0  # other answers, and requests that got none (connection errors, timeouts)
    latency_us: Counter[int] = field(default_factory=Counter)  # microseconds -> how many answers

    @property
    def per_second(self) -> float:
        """Acknowledged requests per second."""
        return self.acknowledged / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile (0-100) of answer latency, in milliseconds (nearest rank)."""
        total = sum(self.latency_us.values())
        if not total:
            return float("nan")
        rank = max(1, -(-total * q // 100))
        seen = 0
        for value in sorted(self.latency_us):
            seen += self.latency_us[value]
            if seen >= rank:
                return value / 1000
        return max(self.latency_us) / 1000

    def merge(self, other: Tally) -> Tally:
        """Both runs as one (durations add up)."""
        return Tally(
            self.seconds + other.seconds,
            self.acknowledged + other.acknowledged,
            self.errors + other.errors,
            self.latency_us + other.latency_us,
        )


def tally_of(result: LoadResult) -> Tally:
    """A Python generator run as a Tally (its latencies are those of the 2xx answers)."""
    errors = sum(n for status, n in result.statuses.items() if status >= 300) + result.transport_errors
    return Tally(
        result.seconds,
        result.acknowledged,
        errors,
        Counter(round(latency * 1_000_000) for latency in result.latencies),
    )


@dataclass
class Numbering:
    """Where the next wrk run's request numbers start, so that successive runs never repeat a body."""

    next: int = 0


def run_wrk(
    port: int,
    path: str,
    seconds: int,
    numbering: Numbering,
    *,
    kind: str = "customer_updated",
    customers: int = 0,
    connections: int = 32,
    threads: int = 2,
    timeout_seconds: int = 10,
) -> Tally:
    """POST ``kind`` events to ``http://127.0.0.1:port{path}`` with wrk for ``seconds`` (whole seconds).

    Event n is about customer ``n % customers + 1``, or customer ``n + 1`` (a new one each time) when
    ``customers`` is 0. wrk's latency counts every answer, a refused one too (the errors show those).
    """
    script = LUA_TEMPLATE.format(path=path, kind=kind, customers=customers, threads=threads, base_ms=BASE_MS)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", encoding="utf-8", delete=False) as file:
        file.write(script)
    try:
        completed = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, seconds)}s",
                f"--timeout={timeout_seconds}s",
                "-s",
                file.name,
                f"http://127.0.0.1:{port}{path}",
                "--",
                str(numbering.next),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + timeout_seconds + 30,
        )
    finally:
        Path(file.name).unlink()
    if completed.returncode != 0:
        raise SystemExit(f"wrk failed ({completed.returncode}): {completed.stderr or completed.stdout}")
    tally = Tally()
    for line in completed.stdout.splitlines():
        fields = line.split()
        if fields[:1] == ["RESULT"]:
            ok, bad, most, duration_us, failed = (int(f) for f in fields[1:])
            tally.acknowledged, tally.errors = ok, bad + failed
            tally.seconds = duration_us / 1_000_000
            numbering.next += (most + 1) * threads
        elif fields[:1] == ["LAT"]:
            tally.latency_us[int(fields[1])] += int(fields[2])
    if not tally.seconds:
        raise SystemExit(f"wrk printed no result:\n{completed.stdout}")
    return tally
