import pytest

from ragft.config import Config, describe, field_help, load_config
from ragft.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_precedence_defaults_then_file_then_overrides(tmp_path):
    path = write(tmp_path, "[finetune]\nrank = 4\nepochs = 3\n")
    config = load_config(path, ["finetune.epochs=5"])
    assert config.finetune.rank == 4  # file beats default
    assert config.finetune.epochs == 5  # command line beats file
    assert config.finetune.alpha == Config().finetune.alpha  # default stays


def test_paths_resolve_against_the_config_file(tmp_path):
    path = write(tmp_path, '[data]\ncorpus = "docs"\n')
    config = load_config(path)
    assert config.path(config.data.corpus) == tmp_path / "docs"


def test_unknown_key_names_file_line_and_closest_key(tmp_path):
    path = write(tmp_path, "[experiment]\nname = 'x'\n\n[finetune]\nrank = 4\nrnak = 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:6: unknown key 'finetune.rnak'")
    assert "did you mean 'finetune.rank'?" in str(err.value)
    path = write(tmp_path, "[finetuning]\nrank = 4\n")
    with pytest.raises(ConfigError, match=":1: unknown key 'finetuning'; did you mean 'finetune'"):
        load_config(path)


def test_unknown_override_names_closest_key():
    with pytest.raises(ConfigError, match="did you mean 'retrieval'"):
        load_config(None, ["retreival.k=5"])


def test_wrong_type_and_bad_preset_are_errors():
    with pytest.raises(ConfigError, match="finetune.rank must be int"):
        load_config(None, ['finetune.rank="four"'])
    with pytest.raises(ConfigError, match="did you mean 'rag\\+ft'"):
        load_config(None, ['experiment.presets=["rag+tf"]'])


def test_the_old_spelling_of_a_renamed_key_works_with_a_warning_naming_the_new_one(tmp_path, capsys):
    from ragft.cli import main
    from ragft.errors import RenamedWarning

    path = write(tmp_path, '[experiment]\nname = "x"\nvariants = ["prompt", "rag"]\n')
    with pytest.warns(RenamedWarning, match=f"{path}:3: experiment.variants is now spelled experiment.presets"):
        assert load_config(path).experiment.presets == ["prompt", "rag"]
    with pytest.warns(RenamedWarning, match="override 'experiment.variants=.*': experiment.variants is now spelled"):
        assert load_config(None, ['experiment.variants=["ft"]']).experiment.presets == ["ft"]
    both = write(tmp_path, '[experiment]\nvariants = ["rag"]\npresets = ["rag"]\n')
    with pytest.raises(ConfigError, match="both experiment.variants and experiment.presets are set"):
        load_config(both)
    # the CLI's old flag: taken, with one line on stderr
    assert main(["finetune", str(tmp_path / "missing.toml"), "--variant", "ft"]) == 2
    err = capsys.readouterr().err
    assert "ragft: warning: --variant is now spelled --pipeline" in err and "config file not found" in err


def test_invalid_toml_names_file(tmp_path):
    path = write(tmp_path, "[finetune\n")
    with pytest.raises(ConfigError, match="invalid TOML") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_every_setting_has_help_text():
    rows = describe()
    assert rows and all(help_text for _, _, help_text in rows), [k for k, _, h in rows if not h]
    assert "LoRA rank" in field_help(type(Config().finetune))["rank"]


def test_sweep_grid_keeps_list_values_whole_and_refuses_other_settings():
    from ragft.runner.sweep import parse_grid, settings_to_try

    grid = parse_grid(['finetune.target_modules=["q_proj","v_proj"],["o_proj"]', "finetune.rank=4,8"])
    assert grid == {"finetune.target_modules": ['["q_proj","v_proj"]', '["o_proj"]'], "finetune.rank": ["4", "8"]}
    assert len(settings_to_try(grid, 0, 0)) == 4 and len(settings_to_try(grid, 3, 0)) == 3
    with pytest.raises(ConfigError, match="finetune"):
        parse_grid(["retrieval.k=2,3"])


FREE_TEXT = {
    "experiment.name", "experiment.output_dir", "experiment.general_examples", "experiment.pairs",
    "models.generator", "models.embedder", "models.device", "models.endpoint", "models.endpoint_key_env",
    "data.corpus", "data.text_field", "data.id_field", "data.examples", "retrieval.rerank",
    "finetune.target_modules", "finetune.train_data", "finetune.init_from", "synth.generator", "synth.checker",
    "sql.database",
    "tracking.mlflow_uri", "tracking.mlflow_experiment",
}  # fmt: skip
"""Settings whose values are names, paths or free text (models.device has its own pattern check)."""


def test_every_numeric_and_choice_setting_declares_what_it_allows():
    """A new number or choice without a declared range fails here, so none goes unchecked."""
    undeclared = [
        key
        for key, default, help_text in describe()
        if "Allowed:" not in help_text
        and key not in FREE_TEXT
        and not isinstance(eval(default), bool)
        and key != "synth.roundtrip"  # a bool, unset (None) by default
    ]
    assert not undeclared


@pytest.mark.parametrize(
    "key,value,allowed",
    [
        ("finetune.checkpoint_every", "0", "must be at least 1"),
        ("generation.batch_size", "-3", "must be at least 1"),
        ("finetune.dropout", "1.0", "must be within [0, 1)"),
        ("finetune.learning_rate", "0", "must be above 0"),
        ("finetune.p_no_gold", "1.5", "must be within [0, 1]"),
        ("experiment.bootstrap_samples", "10", "must be at least 100"),
        ("experiment.seeds", "[1, -2]", "must be within [0, 4294967295]"),
        ("retrieval.hybrid_weights", "[1, -1]", "must be at least 0"),
        ("sql.timeout_s", "0", "must be above 0"),
        ("finetune.validation_fraction", "nan", "must be within [0, 1)"),
    ],
)
def test_out_of_range_values_name_the_key_the_value_and_what_is_allowed(tmp_path, key, value, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{key}={value}"])
    message = str(err.value)
    assert message.startswith(f"override '{key}={value}': {key} = ") and allowed in message, message
    section, name = key.split(".")
    path = write(tmp_path, f"[tracking]\nmlflow_experiment = 'x'\n\n[{section}]\n{name} = {value}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:5: {key} = ") and allowed in str(err.value)


def test_choices_and_cross_setting_rules_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"finetune.method: unknown value 'lorra'; did you mean 'lora'\?"):
        load_config(None, ["finetune.method=lorra"])
    with pytest.raises(ConfigError, match=r"chunking.chunk_overlap \(600\) must be smaller"):
        load_config(None, ["chunking.chunk_overlap=600"])
    path = write(
        tmp_path, "[generation]\nbatch_size = 4\n\n[[pipelines]]\nname = 'p1'\nbase = 'rag'\nretrieval = { k = 0 }\n"
    )
    config = load_config(path)  # a pipeline's settings are checked when it resolves
    from ragft.config import pipeline_settings

    with pytest.raises(ConfigError) as err:
        pipeline_settings(config, config.pipelines[0])
    assert str(err.value) == f"{path}:4: pipeline 'p1': retrieval.k = 0 is out of range: must be at least 1"


def test_python_api_settings_are_range_checked():
    from ragft import LoRA

    with pytest.raises(ConfigError, match="finetune.rank = 0 is out of range"):
        LoRA(rank=0)
