"""`ragft monitor`, `/metrics` and the monitor view: the drift tests against reference values,
the store read read-only (older stores, a writer holding it), a served run watched end to
end over loopback (real uvicorn, real SQLite, the real embedder and retriever), bad input,
and the charts in headless Chromium."""

import hashlib
import json
import math
import shutil
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from helpers import BROWSER_FLAGS, ROOT, running

from ragft.cli import main
from ragft.drift import held_out_novelty, novelty_test, rate_test, shift_test, spent
from ragft.errors import InputError
from ragft.feedback.store import FeedbackStore, RunIdentity, Served, open_store, read_history
from ragft.feedback.windows import WindowSpec, assess_windows, parse_since
from ragft.monitor import Watch
from ragft.runner.folder import run_identity
from ragft.serve.app import make_app
from ragft.stats import ALPHA

OFF_TOPIC = [
    "Which planet in the solar system has the most moons?",
    "How long should pasta boil to be al dente?",
    "Who painted the ceiling of the Sistine Chapel?",
    "What is the boiling point of ethanol at sea level?",
    "Which team won the first football World Cup?",
    "How many strings does a classical violin have?",
    "What gas do plants absorb during photosynthesis?",
    "In which year did the Berlin Wall fall?",
    "What is the capital city of Australia?",
    "How many bones are in the adult human body?",
    "Which composer wrote the Four Seasons?",
    "What is the chemical symbol for gold?",
    "Who wrote the novel Pride and Prejudice?",
    "What is the tallest mountain in Africa?",
    "How many players are on a basketball team on court?",
    "Which element has the atomic number one?",
    "Who discovered penicillin?",
    "What is the longest river in South America?",
    "In which city is the Colosseum?",
    "How many legs does a spider have?",
    "What language is spoken in Brazil?",
]


def test_drift_tests_agree_with_reference_values():
    """p-values as scipy computes them (mannwhitneyu asymptotic two-sided; fisher_exact greater)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.1, 1, 25).round(1), rng.normal(0, 1, 30).round(1)
    assert math.isclose(shift_test(a, b).p, 0.5537266705423065, rel_tol=1e-9)
    quality = rate_test(12, 25, 3, 25)
    assert math.isclose(quality.p, 0.006057981426369449, rel_tol=1e-9)
    assert math.isclose(quality.effect, 0.36) and quality.low < 0.36 < quality.high
    assert 0.05 < quality.low < 0.15 and 0.5 < quality.high < 0.6  # Newcombe's hybrid score interval
    assert rate_test(2, 20, 2, 20).p > 0.6  # no change: nothing to see
    reference = rng.normal(0.48, 0.1, 200)
    same, moved = novelty_test([0.48] * 25, reference, 20), novelty_test([0.7] * 25, reference, 20)
    assert same.p > 0.2 and moved.p < 1e-8 and moved.effect > 0.2
    assert novelty_test([0.55] * 25, reference, 3).p > novelty_test([0.55] * 25, reference, 200).p  # few clusters
    # the spent levels of one kind never sum above its share of alpha, over any number of windows
    assert sum(spent(ALPHA, k) for k in range(1, 100_000)) < ALPHA / 3


def test_held_out_novelty_looks_only_at_other_clusters():
    vectors = np.eye(4, dtype=np.float32)
    vectors[1] = vectors[0]  # a twin in the same cluster does not count
    assert list(held_out_novelty(vectors, ["a", "a", "b", "c"])) == [1.0, 1.0, 1.0, 1.0]
    assert list(held_out_novelty(vectors, ["a", "b", "c", "d"]))[:2] == [0.0, 0.0]
    with pytest.raises(ValueError, match="two clusters"):
        held_out_novelty(vectors, ["a"] * 4)


def _served(i, created, rating=None, rated_at=None, corrected_at=None, score=None):
    ratings = ((rated_at if rated_at is not None else created, rating),) if rating else ()
    return Served(f"x{i}", created, "rag", "rag", f"q{i}", 4, 0.5, score, None, ratings, corrected_at)


def test_windows_by_time_keep_their_gaps_and_rate_quality_once():
    """Hour windows over a gap, `since`, and a window's ratings counted until the next one closes."""
    hour = 3600.0
    rows = [_served(i, i * 60.0, "up" if i < 12 else None) for i in range(12)]  # hour 1: 12, rated up
    rows += [_served(12 + i, 2 * hour + i * 60, "down") for i in range(12)]  # hour 2 empty; hour 3: 12 down
    late = _served(99, 3 * hour + 10, "down", rated_at=10 * hour)  # hour 4, rated long after
    rows.append(late)
    zero = np.zeros(len(rows))
    held_out = np.full(30, 0.5)
    windows, alerts = assess_windows(rows, zero, zero, held_out, 10, WindowSpec(hours=1), 0.05, now=4.5 * hour)
    assert [w.exchanges for w in windows] == [12, 0, 12, 1, 0]
    assert [w.complete for w in windows] == [True, True, True, True, False]
    empty = windows[1]
    assert empty.latency_p50 is None and empty.answer_tokens is None and empty.start == hour and empty.end == 2 * hour
    assert "baseline" in windows[0].tests["quality"]["note"] and "too small" in windows[1].tests["quality"]["note"]
    assert windows[2].tests["quality"]["p"] < 1e-5 and [a.window for a in alerts if a.kind == "quality"] == [3]
    assert windows[2].down_share == 1.0 and windows[0].down_share == 0.0
    assert not [a for a in alerts if a.kind == "questions"]  # novelty 0: nothing new asked
    assert "next window closes" in windows[3].tests["quality"]["note"]  # window 5 is open
    assert late.judged(4 * hour) is None and late.judged() == "down"
    corrected = _served(1, 0.0, corrected_at=5.0)
    assert corrected.judged() == "down" and corrected.judged(4.0) is None  # a correction counts as wrong


def test_monitor_page_escapes_what_the_store_holds():
    from ragft.monitor import Monitoring
    from ragft.serve.monitor_page import monitor_page

    evil = "<script>window.pwned = 1</script>"
    rows = [_served(i, float(i)) for i in range(3)]
    windows, _ = assess_windows(rows, np.zeros(3), np.zeros(3), np.full(5, 0.5), 5, WindowSpec(2), 0.05, now=3.0)
    reference = {"questions": 5, "clusters": 5, "held_out_novelty": 0.5}
    m = Monitoring(
        "run",
        "store",
        "rag",
        "2 exchanges",
        0.05,
        reference,
        windows,
        [],
        [f"holds {evil}"],
        {"up": 0, "down": 0, "corrected": 0, "corrected_or_down": 0},
        None,
    )
    html = monitor_page("rag", m)
    assert evil not in html and "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in html
    assert html.count("<svg") == 2 and "No values yet" in html and "<script" not in html  # no ratings, no scores


def test_window_and_since_settings_are_read_or_refused():
    assert WindowSpec.parse("25") == WindowSpec(25) == WindowSpec() and WindowSpec.parse("6h") == WindowSpec(hours=6)
    assert WindowSpec.parse("30m").describe() == "30m" and WindowSpec.parse("2d").hours == 48
    for bad in ("0", "-3", "2.5", "6 weeks", ""):
        with pytest.raises(InputError, match="--window"):
            WindowSpec.parse(bad)
    with pytest.raises(ValueError, match="number of exchanges or of hours"):
        WindowSpec(10, 6)  # both: one of them, not a silent choice
    assert parse_since("24h", 1_000_000.0) == 1_000_000.0 - 86400
    with pytest.raises(InputError, match="--since 'yesterday'"):
        parse_since("yesterday", 0.0)


OLD_SCHEMA = """
CREATE TABLE exchanges (id TEXT PRIMARY KEY, created REAL NOT NULL, pipeline TEXT NOT NULL, model TEXT NOT NULL,
    question TEXT NOT NULL, passages TEXT NOT NULL, prompt TEXT NOT NULL, answer TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, latency_s REAL NOT NULL);
CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, exchange_id TEXT NOT NULL,
    rating TEXT, correction TEXT, reviewer TEXT);
INSERT INTO exchanges VALUES ('x1', 1.0, 'rag', 'rag', 'Q?', '[]', 'p', 'a', 3, 2, 0.5);
INSERT INTO feedback (created, exchange_id, rating, correction) VALUES (2.0, 'x1', 'down', NULL);
INSERT INTO feedback (created, exchange_id, rating, correction) VALUES (3.0, 'x1', 'up', 'fixed');
"""


def _digest(*paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths]


def test_an_older_store_is_read_as_it_is_and_gains_the_columns_when_served(tmp_path):
    path = tmp_path / "feedback.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    before = _digest(path)
    history = read_history(path)
    assert _digest(path) == before and not (tmp_path / "feedback.sqlite-wal").exists()  # nothing written
    [x] = history.exchanges
    assert history.run is None and (x.top_score, x.run, x.rating, x.corrected) == (None, None, "up", True)
    identity = RunIdentity("abc", "handbook")
    with FeedbackStore(path, identity) as store:  # a server opening it adds the columns
        store.add_exchange("rag", "rag", "Q2?", (), "p", "b", 3, 2, 0.4, top_score=0.8)
        assert store.exchange("x1").top_score is None
    again = read_history(path)
    assert again.run == identity and [(x.top_score, x.run) for x in again.exchanges] == [(None, None), (0.8, "abc")]


def test_the_store_is_read_while_a_writer_holds_it(tmp_path):
    path = tmp_path / "feedback.sqlite"
    store = FeedbackStore(path)
    store.add_exchange("rag", "rag", "Q?", (), "p", "a", 3, 2, 0.5)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a server in the middle of a write
    writer.execute(
        "INSERT INTO exchanges (id, created, pipeline, model, question, passages, prompt, answer, "
        "prompt_tokens, completion_tokens, latency_s) VALUES ('y', 2, 'rag', 'rag', 'Q', '[]', 'p', 'a', 1, 1, 1)"
    )
    done = []
    reader = threading.Thread(target=lambda: done.append(read_history(path)))
    reader.start()
    reader.join(10)
    assert done and [x.question for x in done[0].exchanges] == ["Q?"]  # the committed rows, at once
    writer.execute("COMMIT")
    writer.close()
    assert len(read_history(path).exchanges) == 2
    store.close()
    before = _digest(path)  # a WAL store no server holds: read, not changed
    assert len(read_history(path).exchanges) == 2 and _digest(path) == before


@pytest.fixture
def watched_run(tiny_run, tmp_path):
    """A copy of the tiny run whose training split is the handbook's whole one (220 questions
    in 22 documents): the reference the question test is measured against."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("feedback.sqlite*"))
    config = json.loads((run / "config.json").read_text())
    config["data"]["train_limit"] = 0
    (run / "config.json").write_text(json.dumps(config))
    return run


def test_a_served_run_is_watched_through_metrics_the_monitor_view_and_the_command(
    watched_run, served, embedder, capsys
):
    """Ten of the run's own training questions rated up, then twenty-one off-topic ones, twenty
    rated down and ten of those corrected: from the second window on, questions and retrieval
    alert, and quality in the second window (the third's waits for its ratings until the
    fourth closes); `/metrics`, `/review/monitor` and `ragft monitor` say so, and the command
    writes nothing to the store it reads."""
    run = watched_run
    train = [json.loads(line) for line in (ROOT / "corpora" / "handbook" / "qa.jsonl").open()]
    train = [r["question"] for r in train if r["split"] == "train"][:10]
    identity = run_identity(run)
    store = open_store(run, identity)
    watch = Watch(run, "rag+ft", embedder, WindowSpec(10))
    assert watch.reference.clusters == 22 and len(watch.reference.train) == 220
    with running(make_app(served, store, watch=watch)) as url, httpx.Client(base_url=url, timeout=120) as http:

        def ask(question):
            body = {"model": "rag+ft", "messages": [{"role": "user", "content": question}]}
            reply = http.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200, reply.text
            return reply.json()["ragft"]["exchange_id"]

        with ThreadPoolExecutor(4) as pool:
            asked = list(pool.map(ask, train[:4]))
        kept = [store.exchange(x) for x in asked]
        assert all(x.top_score is not None and x.run == identity.id for x in kept)  # stored with each exchange
        ids = [x.id for x in sorted(kept, key=lambda x: x.created)]

        def review(i, exchange):  # as each answer comes: a window's ratings count until the next one closes
            verdict = {"exchange_id": exchange, "rating": "up" if i < 10 else "down"}
            if 10 <= i < 20:
                verdict["correction"] = "the right answer"
            if i < 30:
                assert http.post("/v1/feedback", json=verdict).status_code == 200

        for i, exchange in enumerate(ids):
            review(i, exchange)
        rest = train[4:] + OFF_TOPIC  # the run's retriever scores them; the generator is not needed for these
        for question, row in zip(rest, served.retriever.retrieve(rest, served.k)):
            ids.append(store.add_exchange("rag+ft", "rag+ft", question, (), "p", "a", 5, 3, 0.2, row[0].score).id)
            review(len(ids) - 1, ids[-1])

        from prometheus_client.parser import text_string_to_metric_families

        scraped = http.get("/metrics")
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(scraped.text)
            for s in family.samples
        }
        chat = (("method", "POST"), ("route", "/v1/chat/completions"), ("status", "200"))
        assert samples[("ragft_requests_total", chat)] == 4
        assert samples[("ragft_ratings_total", (("rating", "down"),))] == 20
        assert samples[("ragft_corrections_total", ())] == 10
        for kind in ("questions", "retrieval", "quality"):
            assert samples[("ragft_drift_alert", (("kind", kind),))] == 1, kind
        assert samples[("ragft_drift_alerts", (("kind", "questions"),))] == 2
        assert samples[("ragft_window", (("statistic", "index"),))] == 3
        assert samples[("ragft_retrain_signal", ())] == 1 and samples[("ragft_monitor_up", ())] == 1

        view = http.get("/review/monitor")
        assert view.status_code == 200 and "default-src 'none'" in view.headers["content-security-policy"]
        assert "questions drift in window 2" in view.text and view.text.count('class="alerted"') == 5
        assert "init_from = &quot;rag+ft&quot;" in view.text

        before = _digest(run / "feedback.sqlite", run / "feedback.sqlite-wal")
        assert main(["monitor", str(run), "--window", "10", "--json"]) == 0
        found = json.loads(capsys.readouterr().out)
        assert _digest(run / "feedback.sqlite", run / "feedback.sqlite-wal") == before  # read while it serves
    store.close()
    assert found["pipeline"] == "rag+ft" and [w["exchanges"] for w in found["windows"]] == [10, 10, 10, 1]
    first, second, third, open_window = found["windows"]
    assert first["tests"]["questions"]["p"] > 0.5 and "baseline" in first["tests"]["quality"]["note"]
    assert second["novelty"] > first["novelty"] + 0.2 and second["top_score"] < first["top_score"]
    alerts = sorted((a["kind"], a["window"]) for a in found["alerts"])
    assert alerts == [("quality", 2), ("questions", 2), ("questions", 3), ("retrieval", 2), ("retrieval", 3)]
    assert all(a["p"] <= a["level"] for a in found["alerts"])
    assert "next window closes" in third["tests"]["quality"]["note"]
    assert "open window" in open_window["tests"]["questions"]["note"]
    assert found["feedback"] == {"up": 10, "down": 20, "corrected": 10, "corrected_or_down": 20}
    assert 'finetune = { init_from = "rag+ft", train_data = "feedback" }' in found["retrain"]["table"]
    assert found["retrain"]["command"] == f"ragft compare {ROOT / 'configs' / 'handbook.toml'} --out {run}"

    assert main(["monitor", str(run), "--window", "10", "--retrain-after", "5"]) == 0
    text = capsys.readouterr().out
    assert "ALERT quality drift in window 2" in text and "20 answers corrected or rated down" in text
    assert "questions drift in window 2" in text and "alerted again in window 3" in text
    assert 'name = "rag+ft+fb"' in text and "window 4 is open (1 exchange)" in text


def test_monitor_refuses_what_it_cannot_watch_and_says_when_it_cannot_test(watched_run, capsys):
    run = watched_run
    store = run / "feedback.sqlite"
    assert main(["monitor", str(run)]) == 2
    assert "no feedback store here" in capsys.readouterr().err
    FeedbackStore(store, run_identity(run)).close()
    assert main(["monitor", str(run)]) == 2
    err = capsys.readouterr().err
    assert "holds no exchanges yet" in err and "ragft serve" in err
    with FeedbackStore(store) as s:
        for i in range(7):
            s.add_exchange("rag", "rag", f"How many days of leave, case {i}?", (), "p", "a", 5, 3, 0.2)
    assert main(["monitor", str(run), "--window", "5"]) == 0
    out = capsys.readouterr().out
    assert "no drift alert" in out and "window 2 is open (2 exchanges)" in out
    assert main(["monitor", str(run), "--window", "5", "--json"]) == 0
    [first, _] = json.loads(capsys.readouterr().out)["windows"]
    assert first["tests"]["questions"]["note"] == "too small to test: 5 exchanges (fewer than 10)"
    assert main(["monitor", str(run), "--window", "6 weeks"]) == 2
    assert "--window '6 weeks'" in capsys.readouterr().err
    other = run.parent / "other.sqlite"
    FeedbackStore(other, RunIdentity("0123456789abcdef", "squad")).close()
    assert main(["monitor", str(run), "--pipeline", "rag", "--store", str(other)]) == 2
    err = capsys.readouterr().err
    assert "belongs to run 'squad'" in err and "not to this run 'handbook'" in err and str(other) in err


def test_monitor_view_in_chromium_shows_the_charts_and_marks_the_alert(watched_run, served, embedder, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium package (`.ci/run` installs it)")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    run = watched_run
    train = [json.loads(line) for line in (ROOT / "corpora" / "handbook" / "qa.jsonl").open()]
    questions = [r["question"] for r in train if r["split"] == "train"][:10] + OFF_TOPIC[:10]
    with open_store(run, run_identity(run)) as store:
        for q in questions:
            store.add_exchange("rag+ft", "rag+ft", q, (), "p", "a", 5, 3, 0.2)
        store.add_exchange("rag+ft", "rag+ft", "One more question?", (), "p", "a", 5, 3, 0.2)
        watch = Watch(run, "rag+ft", embedder, WindowSpec(10))
        with running(make_app(served, store, watch=watch)) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_FLAGS)
            page = browser.new_page(viewport={"width": 1000, "height": 1400})
            page.goto(url + "/review")
            page.click("text=The pipeline over time")
            page.wait_for_url("**/review/monitor")
            assert "questions drift in window 2" in page.locator("[role=alert]").first.inner_text()
            chart = page.locator("#chart-novelty svg")
            box = chart.bounding_box()
            assert box["width"] > 300 and box["height"] > 100
            shot = tmp_path / "novelty.png"
            chart.screenshot(path=str(shot))
            browser.close()
    image = Image.open(shot).convert("RGB")
    pixels = np.asarray(image).astype(int)

    def where(colour):
        near = (np.abs(pixels - np.array(colour)).sum(axis=2) < 60).nonzero()
        return near[1]  # x positions

    red, blue, green = where((0xD6, 0x27, 0x28)), where((0x1F, 0x6F, 0xB4)), where((0x2E, 0x7D, 0x32))
    width = image.width
    assert len(blue) > 100 and len(green) > 100  # the novelty line and the dashed reference are drawn
    assert len(red) > 30 and red.min() > width * 0.4  # the alert ring sits on the later window, not the first
