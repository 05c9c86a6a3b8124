"""The command line: ``python -m dd_core.testing.llm_server --port 0`` serves until SIGTERM or SIGINT
and prints ``LISTENING <port>`` once it listens (see ``--help`` for latency, slots and batches)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from dd_core.testing.llm_server.batch_lifecycle import BatchSettings
from dd_core.testing.llm_server.latency import Serving
from dd_core.testing.llm_server.service import DEFAULT_MODELS, HOST, REFUSABLE, ChatService, start_serving

try:  # installed by the ``test`` extra
    import uvloop
except ImportError:
    uvloop = None

DESCRIPTION = "Local LLM API server (OpenAI, Azure OpenAI and Anthropic protocols) for tests and benchmarks."


def _loopback_host(value: str) -> str:
    with contextlib.suppress(ValueError):
        if value == "localhost" or ipaddress.ip_address(value).is_loopback:
            return value
    raise argparse.ArgumentTypeError(f"{value!r} is not a loopback address; the test server binds to loopback only")


def _batch_seconds(value: str) -> float:
    try:
        return BatchSettings(processing_s=float(value)).processing_s
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}", description=DESCRIPTION)
    parser.add_argument("--host", type=_loopback_host, default=HOST)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--latency-sigma", type=float, default=0.0, help="> 0: lognormal latency, median --latency-ms")
    parser.add_argument("--latency-seed", type=int, default=0)
    parser.add_argument(
        "--slots", type=int, default=None, help="serve N requests at once and queue the rest (a bounded batch)"
    )
    parser.add_argument("--no-metrics", dest="metrics", action="store_false", help="no /metrics endpoint")
    parser.add_argument("--model", dest="models", metavar="NAME", action="extend", nargs="+", help="listed models")
    parser.add_argument("--api-key-env", metavar="NAME", help="require the API key held in this environment variable")
    parser.add_argument(
        "--refuse",
        choices=REFUSABLE,
        action="append",
        default=[],
        help="answer 400 to requests asking for structured output this way (llama-cpp-python refuses json_schema)",
    )
    parser.add_argument(
        "--batch-processing-s", type=_batch_seconds, default=0.0, help="seconds a batch stays in_progress"
    )
    return parser.parse_args(argv)


async def _serve_until_signalled(service: ChatService, host: str, port: int) -> None:
    runner, bound_port = await start_serving(service, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"LISTENING {bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        sys.exit(f"environment variable {args.api_key_env} is empty or not set")
    try:
        serving = Serving(
            args.latency_ms, args.jitter_ms, args.latency_sigma, args.latency_seed, args.slots, args.metrics
        )
    except ValueError as exc:
        sys.exit(str(exc))
    service = ChatService(serving=serving, models=args.models or DEFAULT_MODELS, api_key=api_key, refuse=args.refuse)
    service.batches.settings = BatchSettings(processing_s=args.batch_processing_s)
    _run(_serve_until_signalled(service, args.host, args.port))


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """On uvloop when it is installed (the ``test`` extra): the server shares the machine's cores
    with the client it measures, and libuv's loop spends less of them per request than
    asyncio's. A real model server's work is not on the client's cores at all."""
    if uvloop is None:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)
