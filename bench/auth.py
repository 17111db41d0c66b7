"""What the gate costs: request latency of the same gateway with and without a token check.

Against a running stack (`make run`), one request at a time, N rounds each:
- `GET /v1/protocol.schema.json`: Host check only (public);
- `GET /v1/conversations?limit=1`: Host check + API key looked up in storage + the storage query;
- `GET /v1/conversations?limit=1` with a bad key: Host check + the refused key lookup (401);
- WebSocket upgrade + `session.start` → `session.started`, with the key.
Prints a table of p50/p95 in ms. The key: ECHO_API_KEY or the credentials file `make run` writes."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from echo_voice.client import VoiceClient
from echo_voice.credentials import load_api_key


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed_get(http: httpx.AsyncClient, path: str, headers: dict[str, str], status: int) -> float:
    started = time.perf_counter()
    reply = await http.get(path, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    assert reply.status_code == status, (path, reply.status_code, reply.text)
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="gateway base URL")
    # The default per-user REST limit is 300 a minute: more rounds need ECHO_GATEWAY_REQUESTS_PER_MINUTE.
    parser.add_argument("--rounds", type=int, default=200, help="requests per row (default 200, under 300)")
    args = parser.parse_args()
    key = load_api_key()
    if not key:
        raise SystemExit("no API key: set ECHO_API_KEY or start the stack with `make run` first")
    good = {"Authorization": f"Bearer {key}"}
    bad = {"Authorization": "Bearer ek_000000000000_not-a-key"}
    rows: dict[str, list[float]] = {}
    async with httpx.AsyncClient(base_url=args.url, timeout=10) as http:
        await timed_get(http, "/v1/conversations?limit=1", good, 200)  # warm the connection
        cases = [
            ("public route (Host check only)", "/v1/protocol.schema.json", {}, 200),
            ("REST with a valid key (+ storage list)", "/v1/conversations?limit=1", good, 200),
            ("REST with an unknown key (401)", "/v1/conversations?limit=1", bad, 401),
        ]
        for name, path, headers, status in cases:
            rows[name] = [await timed_get(http, path, headers, status) for _ in range(args.rounds)]
    ws = args.url.replace("http", "ws", 1) + "/v1/voice"
    sessions = []
    for _ in range(min(args.rounds, 50)):
        started = time.perf_counter()
        async with VoiceClient(ws, token=key) as client:
            await client.start()
            sessions.append((time.perf_counter() - started) * 1000)
            await client.send({"type": "session.end"})
            await client.expect("session.ended")
    rows["WebSocket upgrade + session.start (valid key)"] = sessions
    print("| request | n | p50 ms | p95 ms | mean ms |\n|---|---|---|---|---|")
    for name, values in rows.items():
        print(
            f"| {name} | {len(values)} | {pct(values, 0.5):.2f} | {pct(values, 0.95):.2f} |"
            f" {statistics.fmean(values):.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
