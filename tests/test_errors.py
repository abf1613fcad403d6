"""One error surface: every failure of the `ragft` command is a line or two naming its cause
and the file, pipeline or key involved, with a documented exit code."""

import json
import signal
import subprocess
import sys
import time

import pytest
from helpers import HANDBOOK, QUICK

from ragft.cli import main
from ragft.errors import EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_SYSTEM


def _handbook(tmp_path, examples: str | None = None, extra: str = "") -> str:
    """The handbook config with its paths made absolute (and another examples file)."""
    path = tmp_path / "exp.toml"
    examples = examples or str(HANDBOOK / "qa.jsonl")
    path.write_text(f'[data]\ncorpus = "{HANDBOOK / "docs"}"\nexamples = "{examples}"\n{extra}')
    return str(path)


def test_range_errors_and_a_missing_corpus_are_input_errors(tmp_path, capsys):
    config = tmp_path / "nocorpus.toml"
    config.write_text(f'[data]\nexamples = "{HANDBOOK / "qa.jsonl"}"\n')
    assert main(["compare", str(config), *QUICK]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith(f"ragft: error: {config}: data.corpus is not set") and err.count("\n") == 1
    assert main(["compare", _handbook(tmp_path), "finetune.checkpoint_every=0"]) == EXIT_INPUT
    assert "finetune.checkpoint_every = 0 is out of range: must be at least 1" in capsys.readouterr().err
    assert main(["compare", _handbook(tmp_path), "generation.batch_size=-3"]) == EXIT_INPUT
    assert "generation.batch_size = -3 is out of range" in capsys.readouterr().err


def test_a_malformed_examples_line_is_named_before_any_model_loads(tmp_path):
    examples = tmp_path / "qa.jsonl"
    lines = (HANDBOOK / "qa.jsonl").read_text().splitlines()
    examples.write_text("\n".join([*lines[:5], '{"id": "x", "question": "q"', *lines[5:]]) + "\n")
    code = (
        "import sys\nfrom ragft.cli import main\n"
        f"status = main(['compare', {_handbook(tmp_path, str(examples))!r}, '--out', {str(tmp_path / 'run')!r}])\n"
        "loaded = [m for m in ('torch', 'sentence_transformers', 'transformers', 'faiss') if m in sys.modules]\n"
        "print(status, loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == f"{EXIT_INPUT} []", done.stdout + done.stderr
    assert f"ragft: error: {examples}:6: malformed JSON" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing written either


def test_an_unexpected_failure_is_named_briefly_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    import ragft.runner.run

    def broken(self, pipeline, label=None, trained=None):
        raise RuntimeError("tensor shapes disagree")

    monkeypatch.setattr(ragft.runner.run.Run, "predictions", broken)
    args = ["compare", _handbook(tmp_path), *QUICK, "--out", str(tmp_path / "run")]
    assert main(args) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "ragft: internal error: pipeline 'prompt': RuntimeError: tensor shapes disagree",
        "ragft: this is a bug or a setup ragft does not handle yet; run again with --debug for the traceback",
    ]
    assert main([*args, "--debug"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and 'in broken\n    raise RuntimeError("tensor' in err


def test_library_refusals_name_the_setting_and_the_pipeline(tmp_path, capsys, generator):
    tuned = ["experiment.presets=[]", *QUICK[1:], "finetune.max_steps=1", "data.train_limit=4"]
    extra = "\n[[pipelines]]\nname = 'tuned'\nbase = 'ft'\nfinetune = { target_modules = ['q_proj', 'qproj'] }\n"
    config = _handbook(tmp_path, extra=extra)
    assert main(["compare", config, *tuned, "--out", str(tmp_path / "run")]) == EXIT_INPUT
    err = capsys.readouterr().err.splitlines()[-1]  # after the model's loading bar
    assert err.startswith("ragft: error: pipeline 'tuned': finetune.target_modules: 'qproj' not found in the model")
    assert "its linear layers: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in err

    # A model without a chat template (a base model): named, with what to do.
    folder = tmp_path / "base-model"
    generator.model.save_pretrained(folder)
    tokenizer = type(generator.tokenizer).from_pretrained(generator.tokenizer.name_or_path)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    args = ["compare", _handbook(tmp_path), *QUICK, f"models.generator={folder}", "models.dtype=float32"]
    assert main([*args, "--out", str(tmp_path / "run2")]) == EXIT_INPUT
    err = capsys.readouterr().err.splitlines()[-1]
    assert f"ragft: error: pipeline 'prompt': models.generator '{folder}' has no chat template" in err


def test_a_second_run_in_the_same_folder_is_refused_naming_the_first_and_sigterm_interrupts(tmp_path, capsys):
    run = tmp_path / "run"
    settings = [*QUICK, "data.test_limit=110", "generation.max_new_tokens=64"]  # still running when SIGTERM comes
    cmd = [sys.executable, "-m", "ragft.cli", "compare", _handbook(tmp_path), *settings, "--out", str(run)]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        holder = run / ".ragft.lock.json"
        deadline = time.monotonic() + 120
        while not holder.is_file():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        assert json.loads(holder.read_text())["pid"] == first.pid
        assert main(["compare", _handbook(tmp_path), *settings, "--out", str(run)]) == EXIT_SYSTEM
        err = capsys.readouterr().err
        assert err.startswith(f"ragft: error: run folder {run} is in use by ragft pid {first.pid} on ")
        assert err.count("\n") == 1
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == EXIT_INTERRUPTED
    assert "ragft: interrupted; finished work is saved" in first.stderr.read()
    assert not holder.exists()
    from ragft.locks import run_lock

    with run_lock(run):  # the folder is free again
        pass


def test_a_lock_dies_with_its_process(tmp_path):
    """A holder killed with SIGKILL leaves its lock file behind, and nobody is blocked by it."""
    from ragft.locks import run_lock

    code = (
        "from ragft.locks import run_lock\nimport time\n"
        f"with run_lock({str(tmp_path)!r}):\n    print(1, flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "1"
    from ragft.errors import BusyError

    with pytest.raises(BusyError, match=f"pid {holder.pid}"):
        with run_lock(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with run_lock(tmp_path):
        pass


def test_exit_codes_are_documented_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for code in ("0 done", "1 internal error", "2 bad input", "3 the system refused", "130 interrupted"):
        assert code in out
