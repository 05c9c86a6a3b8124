"""The limit for the client side: a bare aiohttp client doing nothing but the HTTP calls.

``--workers`` coroutines each POST ready-made chat bodies (two per row, like the two chained
columns, each body distinct so the server does the same work as for dd) and read the reply,
with the same connection settings as dd (no connection limit, no cookie jar). No rendering,
no JSON on our side, no cache, no bookkeeping. ``--processes`` splits the workers over that
many processes, as ``ddsynth generate --workers`` does.

Last stdout line: {"calls", "seconds", "calls_per_s"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time


def bodies(model: str, start: int, count: int) -> list[bytes]:
    return [
        json.dumps(
            {"model": model, "messages": [{"role": "user", "content": f"Write a question about topic {i}."}], "seed": i}
        ).encode()
        for i in range(start, start + count)
    ]


async def run(url: str, payloads: list[bytes], workers: int) -> None:
    import aiohttp

    queue = iter(payloads)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def worker() -> None:
            for payload in queue:
                async with session.post(url, data=payload, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}")

        await asyncio.gather(*(worker() for _ in range(workers)))


def one_process(args: tuple) -> None:
    url, model, start, count, workers = args
    asyncio.run(run(url, bodies(model, start, count), workers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", default="bench-model")
    ap.add_argument("--calls", type=int, required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--processes", type=int, default=1)
    a = ap.parse_args()
    url = a.base_url.rstrip("/") + "/chat/completions"
    share = [a.calls // a.processes + (i < a.calls % a.processes) for i in range(a.processes)]
    workers = [a.workers // a.processes + (i < a.workers % a.processes) for i in range(a.processes)]
    jobs = [(url, a.model, sum(share[:i]), share[i], workers[i]) for i in range(a.processes)]
    started = time.perf_counter()
    if a.processes == 1:
        one_process(jobs[0])
    else:
        with multiprocessing.get_context("fork").Pool(a.processes) as pool:
            pool.map(one_process, jobs)
    seconds = time.perf_counter() - started
    print(json.dumps({"calls": a.calls, "seconds": round(seconds, 4), "calls_per_s": round(a.calls / seconds, 1)}))


if __name__ == "__main__":
    main()
