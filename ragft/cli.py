"""The `ragft` command. Heavy libraries load inside each command, never at import."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

EXIT_CODES = """exit codes: 0 done; 1 internal error (a bug: run again with --debug); 2 bad input (config,
data file, argument, saved artifact); 3 the system refused (disk full, permission, memory, run
folder in use); 130 interrupted (finished work is kept: the same command continues)"""


def _command(sub: Any, common: argparse.ArgumentParser, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand with the common options (--debug) and the exit codes in its help."""
    return sub.add_parser(name, parents=[common], epilog=EXIT_CODES, **kwargs)


class _Renamed(argparse.Action):
    """An option an earlier release spelled otherwise: still taken, with a warning naming the new one."""

    def __init__(self, *args: Any, new: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: str | None = None) -> None:
        import warnings

        from ragft.errors import RenamedWarning

        message = f"{option} is now spelled {self.new}; the old flag still works in this release"
        warnings.warn(message, RenamedWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


def _pipeline_option(parser: argparse.ArgumentParser, what: str) -> None:
    """`--pipeline NAME` (formerly `--variant`)."""
    parser.add_argument("--pipeline", default="rag+ft", help=what)
    parser.add_argument("--variant", dest="pipeline", action=_Renamed, new="--pipeline", help=argparse.SUPPRESS)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="print the full traceback of an error")
    p = argparse.ArgumentParser(
        prog="ragft",
        description="Compare prompting, RAG and LoRA fine-tuning on your task.",
        epilog=EXIT_CODES,
        parents=[common],
    )
    sub = p.add_subparsers(dest="command", required=True)

    m = _command(sub, common, "models", help="list offline model aliases and whether they are installed")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")

    i = _command(
        sub,
        common,
        "index",
        help="index documents, or bring an existing index up to date (only new or changed text is embedded)",
    )
    i.add_argument("path", help="folder of .txt/.md/.html/.pdf files, BEIR folder, JSONL file or SQuAD JSON")
    i.add_argument("--out", required=True, help="index folder: updated in place, replaced atomically")
    i.add_argument("--embedder", default="all-minilm-l6-v2", help="embedder alias, folder or hub id")
    i.add_argument("--embedder-dtype", choices=("float32", "bfloat16"), default="float32", help="bf16 autocast: faster")
    i.add_argument("--unit", choices=("characters", "tokens"), default="characters", help="what chunk sizes count")
    i.add_argument("--chunk-size", type=int, help="largest chunk (default 500 characters or 200 tokens)")
    i.add_argument("--chunk-overlap", type=int, help="overlap of neighbours (default 50 characters or 20 tokens)")
    i.add_argument("--index-type", choices=("auto", "flat", "hnsw", "ivf", "ivfpq"), default="auto", help="FAISS index")
    i.add_argument("--text-field", default="text", help="JSONL: field with the document text")
    i.add_argument("--id-field", default="id", help="JSONL: field with the document id")
    i.add_argument("--skip-bad", action="store_true", help="skip unreadable files with a warning instead of stopping")

    s = _command(sub, common, "search", help="search a saved index")
    s.add_argument("index", help="index folder written by `ragft index`")
    s.add_argument("query", help="text to search for")
    s.add_argument("-k", type=int, default=3, help="results to show")
    s.add_argument("--embedder", default="all-minilm-l6-v2", help="must be the embedder the index was built with")

    e = _command(
        sub, common, "eval-retrieval", help="score a retriever on BEIR-format data (nDCG@10, MRR@10, recall@k)"
    )
    e.add_argument("path", help="BEIR folder: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv")
    e.add_argument("--split", default="test", help="qrels split to score")
    e.add_argument(
        "--method", nargs="+", choices=("dense", "bm25", "hybrid"), default=["hybrid"], help="retrievers to score"
    )
    e.add_argument("--hyde", action="store_true", help="dense part searches with the query plus a generated draft")
    e.add_argument("--multi-query", type=int, default=0, metavar="N", help="fuse N generated rewrites of each query")
    e.add_argument("--rerank", default="", help="rerank with 'generator' or a cross-encoder name or folder")
    e.add_argument("--rerank-depth", type=int, default=20, help="first-stage hits the reranker rescores")
    e.add_argument("--generator", default="smollm2-135m-instruct", help="generator for HyDE, rewrites, reranking")
    e.add_argument("--limit", type=int, default=0, help="score only the first N judged queries (0 = all)")
    e.add_argument("--embedder", default="all-minilm-l6-v2", help="embedder for dense and hybrid")
    e.add_argument("--embedder-dtype", choices=("float32", "bfloat16"), default="float32", help="bf16 autocast: faster")
    e.add_argument("--index", help="index folder: reused when it holds this corpus, else built and saved there")
    e.add_argument("--out", help="folder to write report.json and report.md into")

    f = _command(
        sub,
        common,
        "finetune",
        help="train one fine-tuned pipeline's adapter into the run folder (works under `accelerate launch`)",
    )
    f.add_argument("config", help="TOML experiment config")
    f.add_argument("overrides", nargs="*", help="key.sub=value settings that win over the file")
    _pipeline_option(f, "trained pipeline to train (ft, rag+ft or a [[pipelines]] name)")
    f.add_argument("--out", help="run folder (default: experiment.output_dir/experiment.name)")

    w = _command(
        sub, common, "sweep", help="tune fine-tuning settings on validation loss (a grid or a random sample of it)"
    )
    w.add_argument("config", help="TOML experiment config")
    w.add_argument("overrides", nargs="*", help="key.sub=value settings that win over the file")
    w.add_argument(
        "--grid", action="append", required=True, metavar="KEY=V1,V2", help="finetune.<key> and values to try"
    )
    _pipeline_option(w, "trained pipeline to tune (ft, rag+ft or a [[pipelines]] name)")
    w.add_argument("--sample", type=int, default=0, help="try only N settings drawn at random (0 = the whole grid)")
    w.add_argument("--out", help="run folder (default: experiment.output_dir/experiment.name)")

    a = _command(sub, common, "adapters", help="list saved LoRA adapters, or merge one into its base model")
    asub = a.add_subparsers(dest="action", required=True)
    al = _command(asub, common, "list", help="adapters under a folder (a run folder, an adapters folder, any tree)")
    al.add_argument("path", help="folder to search")
    am = _command(asub, common, "merge", help="fold an adapter into its base model and save the merged model")
    am.add_argument("adapter", help="adapter folder (with manifest.json)")
    am.add_argument("--out", required=True, help="folder for the merged model (safetensors, tokenizer, manifest)")
    am.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="weights to merge in")

    r = _command(sub, common, "report", help="re-render one run's report, or set several runs side by side")
    r.add_argument("runs", nargs="+", help="run folders written by `ragft compare`")
    r.add_argument(
        "--pair", nargs=2, metavar=("A", "B"), help="pipelines whose per-example wins and losses the HTML shows"
    )
    r.add_argument("--out", help="with several runs: folder to write compare.md into")

    y = _command(
        sub,
        common,
        "synth",
        help="write question-answer training pairs from a corpus (resumable; test documents left out)",
    )
    y.add_argument("corpus", help="folder of .txt/.md/.html/.pdf files, BEIR folder, JSONL file or SQuAD JSON")
    y.add_argument("overrides", nargs="*", help="key.sub=value settings (synth.*, chunking.*, models.*, generation.*)")
    y.add_argument("--out", required=True, help="examples JSONL to write (its record goes beside it: NAME.synth.json)")
    y.add_argument(
        "--examples", help="the task's examples: documents holding its test questions are left out, overlap measured"
    )
    y.add_argument("--config", help="TOML config whose settings apply (the overrides win over it)")

    v = _command(
        sub,
        common,
        "serve",
        help="serve a pipeline of a finished run over an OpenAI-compatible API, with feedback and a review page",
    )
    v.add_argument("run", help="run folder written by `ragft compare`")
    v.add_argument("--pipeline", required=True, help="the pipeline to serve (a name in the run's report)")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (beyond loopback an API key is required)")
    v.add_argument("--port", type=int, default=8000, help="port to listen on")
    v.add_argument("--api-key-env", default="RAGFT_API_KEY", help="environment variable holding the API key")
    v.add_argument("--max-body-bytes", type=int, default=65536, help="largest request body (larger: 413)")
    v.add_argument("--max-question-chars", type=int, default=4000, help="longest question (longer: 422)")
    v.add_argument(
        "--window", default="25", help="monitoring windows (/review/monitor, /metrics): exchanges (25) or time (6h)"
    )

    f = _command(
        sub, common, "feedback", help="write a served run's feedback as training data (SFT, DPO and KTO records)"
    )
    f.add_argument("run", help="run folder that `ragft serve` collected feedback in")
    f.add_argument("--out", required=True, help="folder for sft.jsonl, dpo.jsonl and kto.jsonl")
    f.add_argument("--pipeline", help="only feedback on this pipeline's answers")

    m = _command(
        sub,
        common,
        "monitor",
        help="a served pipeline over time: windows of its exchanges, drift alerts, and when to retrain",
    )
    m.add_argument("run", help="run folder whose pipeline `ragft serve` served")
    m.add_argument("--pipeline", help="the served pipeline (default: the only one in the store)")
    m.add_argument("--window", default="25", help="exchanges per window (default 25), or a span of time (30m, 6h, 2d)")
    m.add_argument("--since", help="show windows from this date, date-time or span back from now (2026-12-01, 24h)")
    m.add_argument("--alpha", type=float, help="chance of any false drift alert over all windows (default 0.05)")
    m.add_argument(
        "--retrain-after",
        type=int,
        help="corrected or down-rated answers that signal retraining (default 100: see the serving guide)",
    )
    m.add_argument("--store", help="a feedback.sqlite elsewhere (default: the run folder's)")
    m.add_argument("--json", action="store_true", help="print the windows, alerts and signal as JSON")

    c = _command(sub, common, "compare", help="run the pipelines of an experiment config and report")
    c.add_argument("config", nargs="?", help="TOML experiment config")
    c.add_argument("overrides", nargs="*", help="key.sub=value settings that win over the file")
    c.add_argument("--out", help="run folder (default: experiment.output_dir/experiment.name)")
    c.add_argument(
        "--pipeline",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this pipeline of the config (repeatable); the report also covers the config's other "
        "pipelines finished in the run folder under their current settings",
    )
    c.add_argument("--help-config", action="store_true", help="list every config key with its default and help")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; any failure becomes a line or two naming its cause and an exit code
    (EXIT_CODES), with the traceback under --debug."""
    import warnings

    from ragft.errors import RenamedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", RenamedWarning)
        warnings.showwarning = _show_warning(warnings.showwarning)
        return _main(argv)


def _show_warning(fallback: Any) -> Any:
    """ragft's own warnings as one line on stderr (`ragft: warning: ...`); others as Python shows them."""
    from ragft.errors import RenamedWarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, RenamedWarning):
            print(f"ragft: warning: {message}", file=sys.stderr)
        else:
            fallback(message, category, *args, **kwargs)

    return show


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may also follow the options
        if not hasattr(args, "overrides") or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    from ragft.errors import EXIT_INTERRUPTED, explain

    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops like Ctrl-C: adapters undone, work kept
    try:
        return {
            "models": _models,
            "index": _index,
            "search": _search,
            "compare": _compare,
            "synth": _synth,
            "serve": _serve,
            "feedback": _feedback,
            "monitor": _monitor,
            "report": _report,
            "eval-retrieval": _eval_retrieval,
            "adapters": _adapters,
            "sweep": _sweep,
            "finetune": _finetune,
        }[args.command](args)
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("ragft: interrupted; finished work is saved, re-run the same command to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        message, code = explain(e)
        print(message, file=sys.stderr)
        return code
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _models(args: argparse.Namespace) -> int:
    from ragft.models import list_models

    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'alias':<24} {'kind':<10} {'installed':<10} where")
    for r in rows:
        print(f"{r['alias']:<24} {r['kind']:<10} {r['installed']:<10} {r['where']}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from ragft.corpus import load_corpus
    from ragft.corpus.chunking import chunk_for_embedder
    from ragft.corpus.loaders import JsonlFields
    from ragft.models import model_id
    from ragft.retrieval import Embedder, sync_index

    tokens = args.unit == "tokens"
    size = args.chunk_size or (200 if tokens else 500)
    overlap = args.chunk_overlap if args.chunk_overlap is not None else (20 if tokens else 50)
    fields = JsonlFields(text=args.text_field, id=args.id_field)
    docs = load_corpus(args.path, fields=fields, skip_bad=args.skip_bad)
    chunks = chunk_for_embedder(docs, args.embedder, args.unit, size, overlap)
    meta = {"chunking": {"unit": args.unit, "chunk_size": size, "chunk_overlap": overlap}}
    index, done = sync_index(
        args.out,
        chunks,
        model_id(args.embedder),
        lambda: Embedder(args.embedder, dtype=args.embedder_dtype),
        meta,
        args.index_type,
    )
    print(
        f"indexed {docs.summary()} as {len(chunks)} chunks into {args.out} ({index.kind} index): "
        f"{done.embedded} texts embedded, {done.reused} chunks reused, {done.added} added, {done.removed} removed"
    )
    return 0


def _search(args: argparse.Namespace) -> int:
    from ragft.retrieval import DenseRetriever, Embedder, VectorIndex

    embedder = Embedder(args.embedder)
    retriever = DenseRetriever(embedder, VectorIndex.load(args.index, embedder.name))
    for hit in retriever.retrieve([args.query], args.k)[0]:
        text = " ".join(hit.chunk.text.split())
        print(f"{hit.rank + 1}. [{hit.score:.3f}] {hit.chunk.id}: {text[:160]}")
    return 0


def _eval_retrieval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ragft.io import write_json_atomic, write_text_atomic
    from ragft.render.markdown import retrieval_markdown
    from ragft.runner.retrieval import QuerySide, run_beir_eval

    query_side = QuerySide(args.hyde, args.multi_query, args.rerank, args.rerank_depth)
    report = run_beir_eval(
        args.path,
        args.split,
        tuple(args.method),
        args.embedder,
        args.index,
        query_side,
        args.generator,
        args.limit,
        embedder_dtype=args.embedder_dtype,
    )
    for name, pipeline in report["pipelines"].items():
        scores = pipeline["metrics"].items()
        metrics = ", ".join(f"{k} {v['mean']:.4f} ({v['low']:.4f}-{v['high']:.4f})" for k, v in scores)
        print(f"{name} on {report['queries']} {args.split} queries, {report['documents']} documents: {metrics}")
    if args.out:
        write_json_atomic(Path(args.out) / "report.json", report)
        write_text_atomic(Path(args.out) / "report.md", retrieval_markdown(report))
        print(f"wrote {args.out}/report.json and report.md")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from ragft.config import load_config
    from ragft.runner.run import finetune, run_dir_for
    from ragft.runner.training import is_main_process

    config = load_config(args.config, args.overrides)
    run_dir = args.out or run_dir_for(config)
    training = finetune(config, args.pipeline, run_dir)
    if is_main_process():
        t = training
        print(
            f"{args.pipeline}: {t['steps']} steps on {t['records']} records in {t['seconds']:.0f} s "
            f"(loss {t['first_loss']:.3f} -> {t['last_loss']:.3f}); adapter in {run_dir}/adapters"
        )
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from ragft.io import write_text_atomic
    from ragft.render.markdown import sweep_markdown
    from ragft.runner.sweep import parse_grid, sweep

    result = sweep(args.config, args.overrides, parse_grid(args.grid), args.pipeline, args.sample, args.out)
    write_text_atomic(result["folder"] / "sweep.md", sweep_markdown(result))
    print(sweep_markdown(result))
    best = result["rows"][0]
    print(f"best: {' '.join(best['settings'])} (validation loss {best['validation_loss']:.4f})")
    return 0


def _adapters(args: argparse.Namespace) -> int:
    from ragft.finetune.adapter import list_adapters, merge_into_base

    if args.action == "list":
        rows = list_adapters(args.path)
        if not rows:
            print(f"no adapters under {args.path}")
        for r in rows:
            size = r["bytes"] / 2**20
            print(f"{r['folder']}: base {r['base_model']}, {r['records']} records, {r['steps']} steps, {size:.1f} MB")
        return 0
    difference = merge_into_base(args.adapter, args.out, args.dtype)
    print(f"merged {args.adapter} into its base: {args.out}; max abs logit difference to the adapter: {difference:.2e}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ragft.runs import rerender, side_by_side, write_side_by_side

    if len(args.runs) == 1:
        print(rerender(args.runs[0], tuple(args.pair) if args.pair else None))
        print(f"wrote {args.runs[0]}/report.md and report.html")
        return 0
    print(side_by_side(args.runs))
    if args.out:
        print(f"wrote {write_side_by_side(args.runs, args.out)}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from ragft.config import load_config
    from ragft.runner.synthesis import synthesize
    from ragft.synth.report import synthesis_lines

    config = load_config(args.config, args.overrides)
    test = []
    if args.examples:
        from ragft.tasks.qa import load_examples

        test = [e for e in load_examples(args.examples) if e.split == "test"]
    synthesis = synthesize(args.corpus, args.out, test=test, config=config)
    print("\n".join(synthesis_lines(synthesis.stats)))
    print(f"wrote {len(synthesis.rows)} pairs to {args.out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ragft.serve.app import Limits
    from ragft.serve.server import serve

    limits = Limits(max_body_bytes=args.max_body_bytes, max_question_chars=args.max_question_chars)
    serve(args.run, args.pipeline, args.host, args.port, args.api_key_env, limits, args.window)
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ragft.errors import InputError
    from ragft.feedback.records import export
    from ragft.feedback.store import FILENAME, open_store

    path = Path(args.run) / FILENAME
    if not path.is_file():
        raise InputError("no feedback store here: `ragft serve` on this run folder collects it", path)
    with open_store(args.run) as store:
        data = export(store, args.out, args.pipeline)
    c = data.counts()
    print(
        f"{c['exchanges']} exchanges with feedback ({c['rated_up']} up, {c['rated_down']} down, "
        f"{c['corrected']} corrected): wrote {c['sft']} SFT, {c['dpo']} DPO and {c['kto']} KTO records to {args.out}"
    )
    return 0


def _monitor(args: argparse.Namespace) -> int:
    import json
    import time

    from ragft.errors import InputError
    from ragft.feedback.windows import WindowSpec, parse_since
    from ragft.monitor import RETRAIN_AFTER, monitor, render_text
    from ragft.stats import ALPHA

    alpha = ALPHA if args.alpha is None else args.alpha
    retrain_after = RETRAIN_AFTER if args.retrain_after is None else args.retrain_after
    if not 0 < alpha < 1:
        raise InputError(f"--alpha {alpha}: a chance between 0 and 1")
    if retrain_after < 1:
        raise InputError(f"--retrain-after {retrain_after}: at least 1")
    spec = WindowSpec.parse(args.window)
    since = parse_since(args.since, time.time()) if args.since else None
    found = monitor(args.run, args.pipeline, spec, since, alpha, retrain_after, args.store)
    print(json.dumps(found.to_json(), indent=2) if args.json else render_text(found), end="\n" if args.json else "")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ragft.config import describe, load_config

    if args.help_config:
        for key, default, doc in describe():
            print(f"{key} = {default}\n    {doc}")
        return 0
    if args.config is None:
        print("ragft compare: a config file is required (see configs/handbook.toml)", file=sys.stderr)
        return 2
    from ragft.experiment import compare
    from ragft.render.markdown import markdown
    from ragft.runner.run import run_dir_for

    config = load_config(args.config, args.overrides)
    run_dir = args.out or run_dir_for(config)
    report = compare(config, run_dir, only=args.pipeline)
    print(markdown(report.data))
    print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
