"""What the serving benchmarks share: `ragft serve` of a run's pipeline in its own process on
a free loopback port, started and waited for, stopped as Ctrl-C would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(run: Path, pipeline: str, port: int) -> subprocess.Popen:
    """`ragft serve` of `pipeline` on `port`, once it answers; its output goes to a log file
    beside the run (`serve-PORT.log`), shown when it fails to start."""
    cmd = [sys.executable, "-m", "ragft.cli", "serve", str(run), "--pipeline", pipeline, "--port", str(port)]
    log = Path(run).parent / f"serve-{port}.log"
    with log.open("w") as out:
        server = subprocess.Popen(cmd, env={**os.environ, "RAGFT_PROGRESS": "0"}, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the server stopped:\n{log.read_text()[-4000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).raise_for_status()
            return server
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start in 300 s") from None
            time.sleep(0.5)


@contextmanager
def serving(run: Path, pipeline: str) -> Iterator[str]:
    """The served pipeline's base URL while the block runs; SIGTERM after."""
    port = free_port()
    server = start(run, pipeline, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
