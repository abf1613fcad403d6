"""The HTTP API of a served pipeline: OpenAI-compatible chat completions and model list,
feedback, and the review page.

    POST /v1/chat/completions   answer the last user message (model NAME) or the messages
                                as sent (model NAME:chat); the reply's `ragft` field holds
                                the exchange id and the retrieved passage ids
    GET  /v1/models             the two model ids
    POST /v1/feedback           {exchange_id, rating: up|down, correction, reviewer}
    GET  /v1/exchanges/{id}     an exchange with the feedback it has had
    GET  /review                recent answers to rate and correct (POST /review saves a form)
    GET  /review/monitor        the pipeline over time: windows, drift alerts, retrain signal (charts)
    GET  /metrics               Prometheus metrics: requests, latencies, tokens, feedback, drift

With an API key every route needs `Authorization: Bearer <key>` (the review page takes it
once into an HttpOnly cookie). Bodies and questions have size limits (413, 422); errors
come back in OpenAI's shape, `{"error": {"message", "type", "code"}}`.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragft.errors import InputError, explain
from ragft.feedback.store import FeedbackStore, UnknownExchange, read_history
from ragft.serve import served as served_module
from ragft.serve.batching import Batcher
from ragft.serve.metrics import ServerMetrics
from ragft.serve.monitor_page import monitor_page, monitor_problem_page
from ragft.serve.review import CSP, login_page, problem_page, review_page
from ragft.serve.served import Answer, ServedPipeline, question_of

if TYPE_CHECKING:
    from ragft.monitor import Monitoring, Watch

COOKIE = "ragft_key"


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    max_body_bytes: int = 65536
    max_question_chars: int = 4000
    max_messages: int = 64
    max_new_tokens: int = 512
    """The most tokens a request may ask for (`max_tokens`); without one, the pipeline's own."""
    max_correction_chars: int = 4000
    review_items: int = 50


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(BaseModel):
    """The chat completion fields ragft reads; others a client sends are accepted and
    ignored (decoding is greedy, so temperature and top_p change nothing)."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream: bool | None = False
    n: int | None = 1


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exchange_id: str = Field(min_length=1, max_length=64)
    rating: Literal["up", "down"] | None = None
    correction: str | None = None
    reviewer: str | None = Field(default=None, max_length=200)


def make_app(
    pipeline: ServedPipeline,
    store: FeedbackStore,
    api_key: str | None = None,
    limits: Limits = Limits(),
    watch: Watch | None = None,
):
    """The FastAPI app serving `pipeline`, recording every exchange and feedback in `store`;
    with `watch`, the monitor view and the drift metrics assess the store's exchanges."""
    batcher: Batcher[served_module.Request, Answer] = Batcher(pipeline.answer, pipeline.generator.batch_size)

    monitoring = LatestMonitoring(watch, store)
    metrics = ServerMetrics(pipeline.name, monitoring)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(
        title="ragft serve",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.batcher = batcher

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if api_key is None and not _loopback_host(request):  # a rebound DNS name reaching loopback
            host = request.headers.get("host", "")
            message = f"this server answers requests addressed to 127.0.0.1 or localhost, not {host!r}"
            return JSONResponse(error_body(message, code="host_not_allowed"), 421)
        if request.method == "POST" and not _same_origin(request):
            return JSONResponse(error_body("cross-site requests are refused", code="cross_origin"), 403)
        if api_key is not None and not _authorized(request, api_key):
            if request.url.path == "/review/login" and request.method == "POST":
                return await call_next(request)
            if request.url.path in ("/review", "/review/monitor") and request.method == "GET":
                return _html(login_page(), 401)
            headers = {"WWW-Authenticate": "Bearer"}
            body = error_body("a valid API key is needed: send Authorization: Bearer <key>", code="invalid_api_key")
            return JSONResponse(body, 401, headers=headers)
        return await call_next(request)

    app.add_middleware(CountRequests, metrics=metrics, routes=app.routes)  # outside the guard: refusals count too
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)  # outermost: the body is read and counted first

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(error_body(e.message, e.kind, e.code), e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(x) for x in err['loc'][1:]) or 'body'}: {err['msg']}" for err in e.errors()]
        return JSONResponse(error_body("; ".join(problems), code="invalid_request"), 422)

    @app.exception_handler(Exception)
    async def failed(request: Request, e: Exception) -> JSONResponse:
        message = explain(e)[0].splitlines()[0].removeprefix("ragft: ")
        return JSONResponse(error_body(message, "server_error"), 500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        message = f"no route {request.method} {request.url.path}" if e.status_code == 404 else str(e.detail)
        return JSONResponse(error_body(message), e.status_code)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        created = int(store.path.stat().st_mtime) if store.path.exists() else 0
        data = [{"id": m, "object": "model", "created": created, "owned_by": "ragft"} for m in pipeline.model_ids]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest) -> dict[str, Any]:
        start = time.perf_counter()
        if body.model not in pipeline.model_ids:
            have = ", ".join(pipeline.model_ids)
            raise ApiError(404, f"no model {body.model!r} here (this server has {have})", code="model_not_found")
        if body.stream:
            raise ApiError(400, "streaming is not supported: send stream=false", code="unsupported")
        if body.n not in (None, 1):
            raise ApiError(400, f"n={body.n}: decoding is greedy, so there is one answer per request")
        if len(body.messages) > limits.max_messages:
            raise ApiError(422, f"{len(body.messages)} messages; this server takes at most {limits.max_messages}")
        messages = tuple((m.role, m.text()) for m in body.messages)
        try:
            question = question_of(messages)
        except InputError as e:
            raise ApiError(422, str(e)) from None
        if len(question) > limits.max_question_chars:
            raise ApiError(
                422,
                f"the question is {len(question)} characters; this server takes at most {limits.max_question_chars}",
                code="question_too_long",
            )
        asked = body.max_completion_tokens or body.max_tokens
        if asked is not None and asked > limits.max_new_tokens:
            raise ApiError(422, f"max_tokens={asked}; this server gives at most {limits.max_new_tokens}")
        budget = asked or pipeline.max_new_tokens
        request = served_module.Request(body.model, messages, budget)
        answer = await asyncio.wrap_future(batcher.submit(request))
        latency = time.perf_counter() - start
        metrics.answers.labels(body.model).inc()
        metrics.tokens.labels("prompt").inc(answer.prompt_tokens)
        metrics.tokens.labels("completion").inc(answer.completion_tokens)
        x = await run_in_threadpool(
            store.add_exchange,
            pipeline.name,
            body.model,
            answer.question,
            answer.passages,
            answer.prompt,
            answer.text,
            answer.prompt_tokens,
            answer.completion_tokens,
            latency,
            answer.top_score,
        )
        return {
            "id": f"chatcmpl-{x.id}",
            "object": "chat.completion",
            "created": int(x.created),
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": answer.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            },
            "ragft": {
                "exchange_id": x.id,
                "pipeline": pipeline.name,
                "passages": [p.id for p in answer.passages],
                "latency_s": latency,
            },
        }

    async def save_feedback(exchange_id: str, rating: str | None, correction: str | None, reviewer: str | None):
        if correction is not None and len(correction) > limits.max_correction_chars:
            raise ApiError(
                422, f"the correction is {len(correction)} characters; at most {limits.max_correction_chars}"
            )
        if rating not in (None, "up", "down") or len(exchange_id) > 64 or len(reviewer or "") > 200:
            raise ApiError(422, "rating is 'up' or 'down'; exchange ids have at most 64 characters, reviewers 200")
        try:
            saved = await run_in_threadpool(store.add_feedback, exchange_id, rating, correction, reviewer)
        except UnknownExchange as e:
            raise ApiError(404, str(e), code="exchange_not_found") from None
        except InputError as e:
            raise ApiError(422, str(e)) from None
        if saved.rating:
            metrics.ratings.labels(saved.rating).inc()
        if saved.correction:
            metrics.corrections.inc()
        return saved

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest) -> dict[str, Any]:
        f = await save_feedback(body.exchange_id, body.rating, body.correction, body.reviewer)
        return {"id": f.id, "exchange_id": f.exchange_id, "rating": f.rating, "correction": f.correction}

    @app.get("/v1/exchanges/{exchange_id}")
    async def exchange(exchange_id: str) -> dict[str, Any]:
        try:
            x = await run_in_threadpool(store.exchange, exchange_id)
        except UnknownExchange as e:
            raise ApiError(404, str(e), code="exchange_not_found") from None
        given = await run_in_threadpool(store.feedback, exchange_id)
        return {
            "id": x.id,
            "pipeline": x.pipeline,
            "model": x.model,
            "question": x.question,
            "passages": [p.id for p in x.passages],
            "answer": x.answer,
            "feedback": [{"rating": f.rating, "correction": f.correction, "reviewer": f.reviewer} for f in given],
        }

    @app.get("/review")
    async def review(saved: str | None = None) -> HTMLResponse:
        recent = await run_in_threadpool(store.recent, limits.review_items, pipeline.name)
        by_exchange: dict[str, list[Any]] = {}
        for f in await run_in_threadpool(store.feedback):
            by_exchange.setdefault(f.exchange_id, []).append(f)
        return _html(review_page(pipeline.name, recent, by_exchange, saved, limits.max_correction_chars))

    _monitoring_routes(app, pipeline.name, monitoring, metrics)

    @app.post("/review")
    async def review_form(request: Request) -> Response:
        form = _form(await request.body())
        exchange_id = form.get("exchange_id", "")
        try:
            await save_feedback(
                exchange_id, form.get("rating") or None, form.get("correction") or None, form.get("reviewer") or None
            )
        except ApiError as e:
            return _html(problem_page(e.message), e.status)
        return RedirectResponse(f"/review?saved={quote(exchange_id)}#x-{quote(exchange_id)}", 303)

    @app.post("/review/login")
    async def login(request: Request) -> Response:
        given = _form(await request.body()).get("key", "")
        if api_key is None:
            return RedirectResponse("/review", 303)
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            return _html(login_page(wrong=True), 401)
        response = RedirectResponse("/review", 303)
        response.set_cookie(COOKIE, given, httponly=True, samesite="strict", secure=False, path="/")
        return response

    return app


class LatestMonitoring:
    """The watch's assessment of the store, made again only when the store has changed (or,
    with time windows, after a few seconds); one at a time. None without a watch."""

    def __init__(self, watch: Watch | None, store: FeedbackStore):
        self.watch, self.store = watch, store
        self._key: Any = None
        self._value: Monitoring | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Monitoring | None:
        if self.watch is None:
            return None
        with self._lock:
            key = (tuple(self.store.counts().values()), None if self.watch.spec.size else int(time.time() // 5))
            if key != self._key:
                self._value, self._key = self.watch.assess(read_history(self.store.path)), key
            return self._value


def _monitoring_routes(app: FastAPI, pipeline: str, monitoring: LatestMonitoring, metrics: ServerMetrics) -> None:
    """GET /review/monitor (the charts) and GET /metrics (Prometheus)."""

    @app.get("/review/monitor")
    async def review_monitor() -> HTMLResponse:
        try:
            found = await run_in_threadpool(monitoring)
        except InputError as e:  # a store made for another run, or one that cannot be read
            return _html(monitor_problem_page(explain(e)[0].removeprefix("ragft: error: ")), 409)
        return _html(monitor_page(pipeline, found))

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(await run_in_threadpool(generate_latest, metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _authorized(request: Request, api_key: str) -> bool:
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
    return bool(given) and hmac.compare_digest(given.encode(), api_key.encode())


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _loopback_host(request: Request) -> bool:
    """The request names a loopback host (the Host header, port aside)."""
    host = request.headers.get("host", "")
    name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else host.rsplit(":", 1)[0]
    return name in LOOPBACK_NAMES


def _same_origin(request: Request) -> bool:
    """A browser's POST from another site carries its Origin: refused (no cross-site feedback)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _form(body: bytes) -> dict[str, str]:
    """A URL-encoded form's fields (the last value of each)."""
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in fields.items()}


def _html(text: str, status: int = 200) -> HTMLResponse:
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    return HTMLResponse(text, status, headers=headers)


class BodyLimit:
    """Reads a request's body before the app does, refusing one over `limit` bytes with a
    413 (a declared Content-Length at once, a streamed body as its bytes arrive), then hands
    the app the body it read."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            more = message.get("more_body", False)
        body: bytes | None = b"".join(chunks)

        async def replay() -> dict[str, Any]:
            nonlocal body
            if body is None:
                return await receive()  # after the body: wait for the disconnect
            message, body = {"type": "http.request", "body": body, "more_body": False}, None
            return message

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = f"the request body is over {self.limit} bytes"
        await JSONResponse(error_body(message, code="body_too_large"), 413)(scope, receive, send)


class CountRequests:
    """Counts every request by route, method and status, and times it (a request that fails
    with an exception counts as a 500)."""

    def __init__(self, app: Any, metrics: ServerMetrics, routes: list[Any]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def sent(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = getattr(scope.get("route"), "path", None)  # a refused request never reached its route
            if route is None:
                route = scope["path"] if scope["path"] in {getattr(r, "path", "") for r in self.routes} else "unmatched"
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
