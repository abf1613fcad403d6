"""`ragft serve`: a finished run's pipeline over an OpenAI-compatible API on loopback,
driven by the official `openai` client and httpx; the feedback store; the batcher; the
review page in headless Chromium; the API key; a server killed mid-feedback."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from helpers import BROWSER_FLAGS, ROOT, running

from ragft.cli import main
from ragft.errors import ConfigError
from ragft.feedback.store import FeedbackStore, Passage
from ragft.io import read_jsonl
from ragft.runs import rerender
from ragft.serve.app import Limits, make_app
from ragft.serve.batching import Batcher
from ragft.serve.served import ServedPipeline
from ragft.serve.server import api_key_from


@pytest.fixture
def server(served, tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    with running(make_app(served, store, limits=Limits(max_body_bytes=20_000, max_question_chars=500))) as url:
        yield url, store
    store.close()


def test_served_pipeline_answers_as_the_run_did(tiny_run, served):
    """Same retriever, template and adapter: the served prompt and answer are the run's own."""
    from ragft.serve.served import Request

    rows = [row for _, row in read_jsonl(tiny_run / "predictions" / "rag+ft.jsonl")][:2]
    questions = {r["example_id"]: r for r in rows}
    examples = {row["id"]: row for _, row in read_jsonl(ROOT / "corpora" / "handbook" / "qa.jsonl")}
    requests = [Request("rag+ft", (("user", examples[i]["question"]),), served.max_new_tokens) for i in questions]
    answers = served.answer(requests)
    for answer, row in zip(answers, questions.values()):
        assert answer.prompt == row["prompt"]
        assert answer.text == row["output"]
        assert [p.id for p in answer.passages] == row["retrieved"]
    assert served.generator.model is not served._base_model  # the adapter is on


def test_openai_client_chats_with_the_pipeline_and_feedback_is_stored(server):
    from openai import NotFoundError, OpenAI

    url, store = server
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    assert [m.id for m in client.models.list()] == ["rag+ft", "rag+ft:chat"]
    question = "How many days of annual leave does a new employee get?"
    reply = client.chat.completions.create(model="rag+ft", messages=[{"role": "user", "content": question}])
    extra = reply.model_extra["ragft"]
    answer = reply.choices[0].message.content
    assert answer and reply.usage.prompt_tokens > 50 and reply.choices[0].finish_reason in ("stop", "length")
    x = store.exchange(extra["exchange_id"])
    assert (x.question, x.answer, x.model) == (question, answer, "rag+ft")
    assert [p.id for p in x.passages] == extra["passages"] and len(x.passages) == 3
    assert x.passages[0].text and "Context:" in x.prompt and question in x.prompt

    chat = client.chat.completions.create(model="rag+ft:chat", messages=[{"role": "user", "content": "Say hi."}])
    assert chat.model_extra["ragft"]["passages"] == [] and "Context:" not in store.exchange(chat.id[9:]).prompt

    with httpx.Client(base_url=url, timeout=60) as http:
        saved = http.post("/v1/feedback", json={"exchange_id": x.id, "rating": "down", "correction": " 25 days "})
        assert saved.status_code == 200, saved.text
        assert http.post("/v1/feedback", json={"exchange_id": x.id, "rating": "up", "reviewer": "ana"}).is_success
        [first, second] = store.feedback(x.id)
        assert (first.rating, first.correction, first.reviewer) == ("down", "25 days", None)
        assert (second.rating, second.correction, second.reviewer) == ("up", None, "ana")
        got = http.get(f"/v1/exchanges/{x.id}").json()
        assert got["answer"] == answer and [f["rating"] for f in got["feedback"]] == ["down", "up"]

        missing = http.post("/v1/feedback", json={"exchange_id": "nope", "rating": "up"})
        assert missing.status_code == 404 and "'nope'" in missing.json()["error"]["message"]
        assert http.get("/v1/exchanges/nope").status_code == 404
        empty = http.post("/v1/feedback", json={"exchange_id": x.id})
        assert empty.status_code == 422 and "rating" in empty.json()["error"]["message"]
        bad = http.post("/v1/feedback", json={"exchange_id": x.id, "rating": "meh"})
        assert bad.status_code == 422 and "rating" in bad.json()["error"]["message"]
        assert len(store.feedback(x.id)) == 2  # nothing stored from the refused ones

        huge = http.post("/v1/chat/completions", content=b"x" * 30_000, headers={"content-type": "application/json"})
        assert huge.status_code == 413 and "20000 bytes" in huge.json()["error"]["message"]

        def streamed():
            yield b'{"model": "rag+ft", "messages": [{"role": "user", "content": "'
            for _ in range(30):
                yield b"y" * 1000
            yield b'"}]}'

        chunked = http.post("/v1/chat/completions", content=streamed(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413  # no Content-Length: counted as it arrives
        long_question = {"model": "rag+ft", "messages": [{"role": "user", "content": "why " * 200}]}
        too_long = http.post("/v1/chat/completions", json=long_question)
        assert too_long.status_code == 422 and "at most 500" in too_long.json()["error"]["message"]
        no_user = http.post(
            "/v1/chat/completions", json={"model": "rag+ft", "messages": [{"role": "system", "content": "x"}]}
        )
        assert no_user.status_code == 422 and "no user message" in no_user.json()["error"]["message"]
        broken = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert broken.status_code == 422
        rebound = http.get("/v1/models", headers={"host": "evil.example:8000"})  # DNS rebinding to loopback
        assert rebound.status_code == 421 and "127.0.0.1 or localhost" in rebound.json()["error"]["message"]
        foreign = http.post(
            "/v1/feedback", json={"exchange_id": x.id, "rating": "up"}, headers={"origin": "http://evil.test"}
        )
        assert foreign.status_code == 403
    with pytest.raises(NotFoundError, match="no model 'gpt-4o'.*rag\\+ft, rag\\+ft:chat"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": question}])
    assert store.counts() == {"exchanges": 2, "feedback": 2}


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(served, server):
    url, store = server
    questions = [f"What is item {i} of the leave policy?" for i in range(8)]
    with httpx.Client(base_url=url, timeout=120) as http:

        def ask(q):
            r = http.post(
                "/v1/chat/completions", json={"model": "rag+ft", "messages": [{"role": "user", "content": q}]}
            )
            r.raise_for_status()
            return r.json()["ragft"]["exchange_id"]

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(ask, questions))
    assert [store.exchange(i).question for i in ids] == questions
    from ragft.serve.served import Request

    alone = served.answer([Request("rag+ft", (("user", questions[3]),), served.max_new_tokens)])[0]
    assert store.exchange(ids[3]).answer == alone.text  # batched with others, the same answer


def test_batcher_groups_waiting_items_and_a_failure_fails_only_its_request():
    entered, gate, seen = threading.Event(), threading.Event(), []

    def work(items):
        seen.append(list(items))
        entered.set()
        gate.wait(10)
        if "boom" in items:
            raise ValueError("boom")
        return [i.upper() for i in items]

    batcher = Batcher(work, batch_size=4)
    first = batcher.submit("a")
    entered.wait(10)  # the worker is busy with "a": the next ones wait together
    rest = [batcher.submit(x) for x in ["b", "c", "d", "boom"]]
    gate.set()
    assert first.result(10) == "A" and [f.result(10) for f in rest[:3]] == ["B", "C", "D"]
    with pytest.raises(ValueError, match="boom"):
        rest[3].result(10)
    assert seen == [["a"], ["b", "c", "d", "boom"], ["b"], ["c"], ["d"], ["boom"]]  # then one by one
    assert batcher.submit("e").result(10) == "E"  # the worker lives on
    batcher.close()


def test_an_api_key_guards_every_route(served, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="0.0.0.0.*RAGFT_API_KEY"):
        api_key_from("RAGFT_API_KEY", "0.0.0.0")
    monkeypatch.setenv("RAGFT_API_KEY", "s3cret")
    assert api_key_from("RAGFT_API_KEY", "0.0.0.0") == "s3cret"
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    with running(make_app(served, store, api_key="s3cret")) as url, httpx.Client(base_url=url, timeout=60) as http:
        for method, path in [
            ("GET", "/v1/models"),
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/feedback"),
            ("GET", "/v1/exchanges/x"),
            ("POST", "/review"),
            ("GET", "/review/monitor"),
            ("GET", "/metrics"),
            ("GET", "/nope"),
        ]:
            r = http.request(method, path, json={})
            assert r.status_code == 401, (method, path)
            assert http.request(method, path, json={}, headers={"authorization": "Bearer wrong"}).status_code == 401
        login = http.get("/review")
        assert login.status_code == 401 and 'name="key"' in login.text and "Review the answers" not in login.text
        ok = http.get("/v1/models", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert http.post("/review/login", data={"key": "wrong"}).status_code == 401
        http.post("/review/login", data={"key": "s3cret"})  # the cookie opens the review page
        assert http.get("/review").status_code == 200 and "Review the answers" in http.get("/review").text
        assert "started without monitoring" in http.get("/review/monitor").text  # the cookie opens it too
        metrics = http.get("/metrics", headers={"authorization": "Bearer s3cret"})
        assert metrics.status_code == 200 and 'ragft_requests_total{method="GET",route="/v1/models",status="401"}' in (
            metrics.text
        )
    store.close()


def test_review_page_in_chromium_stores_what_was_entered_and_runs_no_model_script(served, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium package (`.ci/run` installs it)")
    from playwright.sync_api import sync_playwright

    store = FeedbackStore(tmp_path / "feedback.sqlite")
    evil = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    a = store.add_exchange(
        "rag+ft",
        "rag+ft",
        "How long is parental leave?",
        (Passage("d1#0", "Parental leave <b>is</b> 16 weeks."),),
        "p",
        "16 weeks",
        10,
        3,
        0.2,
    )
    b = store.add_exchange("rag+ft", "rag+ft", "Who approves travel?", (), "p", evil, 10, 3, 0.2)
    with running(make_app(served, store)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_FLAGS)
        page = browser.new_page()
        page.goto(url + "/review")
        assert page.evaluate("window.pwned") is None
        answer_b = page.locator(f"#x-{b.id} .answer")
        assert answer_b.inner_text() == evil  # shown as text
        assert page.locator(f"#x-{a.id} details li").text_content() == "d1#0: Parental leave <b>is</b> 16 weeks."

        page.locator(f"#x-{a.id} input[value=up]").check()
        page.locator(f"#x-{a.id} input[name=reviewer]").fill("lee")
        page.locator(f"#x-{a.id} button").click()
        page.wait_for_url("**/review?saved=*")
        page.locator(f"#x-{b.id} input[value=down]").check()
        page.locator(f"#x-{b.id} textarea").fill("The head of the department, in writing.")
        page.locator(f"#x-{b.id} button").click()
        page.wait_for_url(f"**/review?saved={b.id}*")
        page.reload()
        assert "correction: “The head of the department, in writing.”" in page.locator(f"#x-{b.id}").inner_text()
        assert page.evaluate("window.pwned") is None
        browser.close()
    rows = [(f.exchange_id, f.rating, f.correction, f.reviewer) for f in store.feedback()]
    assert rows == [(a.id, "up", None, "lee"), (b.id, "down", "The head of the department, in writing.", None)]
    store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_feedback_acknowledged_before_a_kill_9_is_kept(tiny_run, tmp_path):
    """`ragft serve` in its own process, killed with SIGKILL while feedback streams in."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    port = _free_port()
    env = {**os.environ, "RAGFT_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "ragft.cli", "serve", str(run), "--pipeline", "prompt", "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            deadline = time.monotonic() + 120
            while True:
                assert server.poll() is None, server.stdout.read()
                try:
                    http.get("/v1/models")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            reply = http.post(
                "/v1/chat/completions", json={"model": "prompt", "messages": [{"role": "user", "content": "Hi?"}]}
            )
            exchange = reply.json()["ragft"]["exchange_id"]
            acked, stop = [], threading.Event()

            def post():
                with httpx.Client(base_url=url, timeout=10) as c:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        try:
                            r = c.post("/v1/feedback", json={"exchange_id": exchange, "correction": f"fix {n}"})
                        except httpx.TransportError:
                            return
                        if r.status_code == 200:
                            acked.append(f"fix {n}")

            writers = [threading.Thread(target=post) for _ in range(4)]
            for w in writers:
                w.start()
            while len(acked) < 40:
                time.sleep(0.01)
            server.send_signal(signal.SIGKILL)
            server.wait(30)
            stop.set()
            for w in writers:
                w.join(30)
    finally:
        if server.poll() is None:
            server.kill()
    store = FeedbackStore(run / "feedback.sqlite")
    kept = {f.correction for f in store.feedback(exchange)}
    assert set(acked) <= kept and len(acked) >= 40
    store.close()


def test_serve_command_refuses_what_it_cannot_serve(tiny_run, capsys, monkeypatch):
    monkeypatch.delenv("RAGFT_API_KEY", raising=False)
    assert main(["serve", str(tiny_run), "--pipeline", "rag", "--host", "0.0.0.0"]) == 2
    assert "RAGFT_API_KEY" in capsys.readouterr().err
    assert main(["serve", str(tiny_run), "--pipeline", "rag+fT"]) == 2
    assert "no pipeline 'rag+fT' in this run; did you mean 'rag+ft'?" in capsys.readouterr().err
    assert main(["serve", str(tiny_run.parent), "--pipeline", "rag"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert json.loads((tiny_run / "pipelines.json").read_text())["rag+ft"]["trained"] is True


def test_an_endpoint_arm_through_ragft_serve_answers_as_the_local_arm(tiny_run, generator, embedder, tmp_path):
    """The `prompt` pipeline on the local model, and the same pipeline whose generator is `ragft serve`'s
    chat model (the same base model, over HTTP with the openai client): the same answers."""
    import ragft
    from ragft.config import load_config
    from ragft.endpoint import EndpointGenerator
    from ragft.errors import EndpointError
    from ragft.settings import resolve_pipelines

    handbook = ROOT / "corpora" / "handbook"
    task = ragft.QATask.from_jsonl(handbook / "qa.jsonl", handbook / "docs", test_limit=6, train_limit=4)
    plain = ServedPipeline.load(tiny_run, "prompt", generator=generator, embedder=embedder)
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    with running(make_app(plain, store)) as url:
        remote = EndpointGenerator(url + "/v1", "prompt:chat", batch_size=3, max_new_tokens=12, retries=0)
        local = generator.with_decoding(4, 12, 0)
        billed = ragft.Prices(million_input_tokens=2.0, million_output_tokens=8.0)  # the endpoint's price
        pipelines = [ragft.Pipeline("local", local), ragft.Pipeline("endpoint", remote, prices=billed)]
        experiment = ragft.Experiment(task, pipelines, tmp_path / "run", context_views=False, prices=ragft.Prices(3.6))
        report = experiment.run()
    plain.close()
    rows = {
        name: sorted(
            (r["example_id"], r["output"], r["prompt_tokens"], r["completion_tokens"])
            for _, r in read_jsonl(tmp_path / "run" / "predictions" / f"{name}.jsonl")
        )
        for name in ("local", "endpoint")
    }
    assert len(rows["endpoint"]) == 6 and rows["endpoint"] == rows["local"]  # answers and token counts
    assert json.loads(rows["endpoint"] and (tmp_path / "run" / "predictions" / "endpoint.jsonl").open().readline())[
        "prompt"
    ].startswith('[{"role": "system"')  # the messages as sent
    assert store.counts()["exchanges"] == 6  # each question went over HTTP
    assert report.verdict is not None
    store.close()
    tokens = [sum(r[i] for r in rows["endpoint"]) / 6 for i in (2, 3)]
    for rendered in (json.loads((tmp_path / "run" / "report.json").read_text()), None):
        if rendered is None:  # `ragft report` prices the saved run again, each pipeline at its own prices
            rerender(tmp_path / "run")
            rendered = json.loads((tmp_path / "run" / "report.json").read_text())
        costs = {n: rendered["pipelines"][n]["costs"] for n in ("local", "endpoint")}
        expected = 1000 * (2 * tokens[0] + 8 * tokens[1]) / 1e6  # $2 and $8 per million, per 1,000 queries
        assert costs["endpoint"]["dollars_per_1000_queries"] == pytest.approx(expected)
        assert costs["local"]["dollars_per_1000_queries"] == pytest.approx(costs["local"]["seconds_per_query_mean"])
        assert "dollars_per_hour" not in costs["endpoint"]  # the machine waiting for the endpoint is not charged
    assert "endpoint: tokens at the endpoint's price per million" in (tmp_path / "run" / "report.md").read_text()

    down = EndpointGenerator(f"http://127.0.0.1:{_free_port()}/v1", "x", retries=0, timeout_s=5)
    with pytest.raises(EndpointError, match="endpoint http://127.0.0.1:.*no answer after 1 tries"):
        down.generate_batch([down.render([{"role": "user", "content": "hi"}])])
    config = load_config(ROOT / "configs" / "handbook.toml", ["models.endpoint=http://127.0.0.1:9/v1"])
    with pytest.raises(ConfigError, match="'rag\\+ft'.*cannot be fine-tuned"):
        resolve_pipelines(config)
