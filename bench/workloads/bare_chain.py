"""The limit for a chained LLM workload against a real model: a bare aiohttp client.

``--workers`` coroutines each take a row: POST "Write a question about <topic>." and then
"Answer this question: <the question>" (the two chained llm_text columns of the benchmarks),
reading each reply's content and nothing else. No rendering library, no cache, no bookkeeping.

Last stdout line: {"rows", "calls", "seconds", "completion_tokens"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

TOPICS = ["astronomy", "cooking", "history", "music", "sailing"]


async def run(url: str, model: str, rows: int, workers: int) -> int:
    queue = iter(range(rows))
    tokens = 0
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def ask(prompt: str, seed: int) -> str:
            nonlocal tokens
            body = {"model": model, "messages": [{"role": "user", "content": prompt}], "seed": seed}
            async with session.post(url, json=body) as response:
                reply = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {reply}")
            tokens += reply["usage"]["completion_tokens"]
            return reply["choices"][0]["message"]["content"]

        async def worker() -> None:
            for row in queue:
                question = await ask(f"Write a question about {TOPICS[row % len(TOPICS)]}.", 2 * row)
                await ask(f"Answer this question: {question}", 2 * row + 1)

        await asyncio.gather(*(worker() for _ in range(workers)))
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", default="bench-model")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--workers", type=int, required=True)
    a = ap.parse_args()
    started = time.perf_counter()
    tokens = asyncio.run(run(a.base_url.rstrip("/") + "/chat/completions", a.model, a.rows, a.workers))
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": a.rows, "calls": 2 * a.rows, "seconds": round(seconds, 4), "completion_tokens": tokens}))


if __name__ == "__main__":
    main()
