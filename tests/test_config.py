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


def test_wrong_type_and_bad_variant_are_errors():
    with pytest.raises(ConfigError, match="finetune.rank must be int"):
        load_config(None, ['finetune.rank="four"'])
    with pytest.raises(ConfigError, match="did you mean 'rag\\+ft'"):
        load_config(None, ['experiment.variants=["rag+tf"]'])


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
    from ragft.sweep import parse_grid, settings_to_try

    grid = parse_grid(['finetune.target_modules=["q_proj","v_proj"],["o_proj"]', "finetune.rank=4,8"])
    assert grid == {"finetune.target_modules": ['["q_proj","v_proj"]', '["o_proj"]'], "finetune.rank": ["4", "8"]}
    assert len(settings_to_try(grid, 0, 0)) == 4 and len(settings_to_try(grid, 3, 0)) == 3
    with pytest.raises(ConfigError, match="finetune"):
        parse_grid(["retrieval.k=2,3"])
