"""`ragft serve`: one pipeline of a finished run behind uvicorn, on loopback unless told
otherwise (and then only with an API key)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ragft.errors import ConfigError, InputError
from ragft.feedback.store import FILENAME, open_store, read_history

if TYPE_CHECKING:
    from ragft.serve.app import Limits

KEY_ENV = "RAGFT_API_KEY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: may resolve anywhere


def api_key_from(env: str = KEY_ENV, host: str = "127.0.0.1") -> str | None:
    """The API key in `$env` (None when unset); binding beyond loopback without one is refused."""
    key = os.environ.get(env) or None
    if key is None and not is_loopback(host):
        raise ConfigError(
            f"binding {host} serves beyond this machine, so every request must carry an API key: "
            f"set one in ${env} (or name another variable with --api-key-env)"
        )
    return key


def serve(
    run_dir: str | Path,
    pipeline: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    key_env: str = KEY_ENV,
    limits: Limits | None = None,
    window: str = "25",
) -> None:
    """Serve `pipeline` of the run in `run_dir` until stopped (Ctrl-C or SIGTERM)."""
    import uvicorn

    from ragft.feedback.windows import WindowSpec
    from ragft.monitor import Watch, check_store
    from ragft.runner.folder import run_identity
    from ragft.serve.app import Limits, make_app
    from ragft.serve.served import ServedPipeline

    key = api_key_from(key_env, host)
    spec = WindowSpec.parse(window)  # bad input stops before any model loads
    identity = run_identity(run_dir)
    if (Path(run_dir) / FILENAME).is_file():  # a store copied from another run is not written to
        check_store(read_history(Path(run_dir) / FILENAME), identity)
    served = ServedPipeline.load(run_dir, pipeline)
    try:
        watch: Watch | None = Watch(run_dir, pipeline, served.embedder(), spec, data=served.data)
    except InputError as e:
        print(f"ragft: no monitoring (/review/monitor, drift in /metrics): {e}", flush=True)
        watch = None
    store = open_store(run_dir, identity)
    app = make_app(served, store, key, limits or Limits(), watch)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    print(f"serving pipeline {pipeline!r} at {url}/v1 (models: {', '.join(served.model_ids)})", flush=True)
    print(f"review page: {url}/review (over time: {url}/review/monitor); metrics: {url}/metrics", flush=True)
    print(f"exchanges and feedback: {store.path}", flush=True)
    if key:
        print(f"every request needs the key in ${key_env}", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        store.close()
        served.close()
