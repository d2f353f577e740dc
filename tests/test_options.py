"""The one schema of the run options (`virt_tf.options`): the YAML files, the flags, the checks
and the heads' defaults all derive from it."""
import dataclasses
import glob
import os

import pytest
import yaml
from absl import flags

from virt_tf import options as schema
from virt_tf.config import CONFIG_DIR, defaults, load_config, pipeline_options
from virt_tf.errors import ConfigError
from virt_tf.options import DebugOptions, RunOptions

OPTION_FILES = [os.path.join(CONFIG_DIR, "base.yaml")] + sorted(
    p for name in ("tasks", "models", "recipes")
    for p in glob.glob(os.path.join(CONFIG_DIR, name, "*.yaml")))


def _yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def test_the_option_files_are_found():
    assert len(OPTION_FILES) > 10


@pytest.mark.parametrize("path", OPTION_FILES)
def test_every_key_of_every_options_file_is_an_option(path):
    unknown = set(_yaml(path)) - set(schema.NAMES)
    assert not unknown, f"{path}: {sorted(unknown)} are not options of virt_tf/options.py"


def test_base_yaml_holds_the_paper_values_and_nothing_else():
    """Each default is written once: base.yaml sets exactly the options marked PAPER, and the
    schema gives a default to every other one."""
    base = _yaml(os.path.join(CONFIG_DIR, "base.yaml"))
    assert sorted(base) == sorted(schema.paper_options())
    assert set(schema.schema_defaults()).isdisjoint(base)
    assert set(defaults()) == set(schema.NAMES)
    assert defaults()["learning_rate"] == 5e-5 and defaults()["poly_codes"] == 360


def test_an_unknown_option_in_a_file_or_an_override_is_refused(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("epochs: 2\npoly_codez: 7\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"extra.yaml: unknown option\(s\) \['poly_codez'\]"):
        load_config("rte", "poly", str(extra))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['epoch'\]"):
        load_config("rte", "poly", overrides={"epoch": 2})
    extra.write_text("epochs: 2\n", encoding="utf-8")
    assert load_config("rte", "poly", str(extra)).epochs == 2


def test_the_train_flags_are_the_schema():
    """One flag per option that has one, with its type, choices and help, default None (so
    the YAML files layer under a flag that is not given)."""
    values = flags.FlagValues()
    schema.define_flags(values)
    fields = {f.name: f for f in dataclasses.fields(RunOptions)}
    assert set(values) == {n for n, f in fields.items() if f.metadata["flag"]}
    assert set(schema.OVERRIDABLE) == set(values) - {"recipe"}
    for name in values:
        flag, meta = values[name], fields[name].metadata
        assert flag.default is None and flag.help.endswith(meta["help"]), name
        if meta["choices"]:
            assert list(flag.parser.enum_values) == list(meta["choices"]), name
    assert values["batch_size"].flag_type() == "int"
    assert values["learning_rate"].flag_type() == "float"
    assert values["pool_padding"].flag_type() == "bool"
    assert "list" in values["augment"].flag_type()
    assert values["eval_split"].flag_type() == "string"
    assert "auto" in values["precision"].parser.enum_values


def test_flag_overrides_skip_flags_not_given_and_read_layer_numbers():
    given = {name: None for name in schema.OVERRIDABLE}
    given.update(epochs=2, virt_layers=["1", "3"])
    assert schema.flag_overrides(given) == {"epochs": 2, "virt_layers": [1, 3]}


BAD = [
    ({"batch_size": 0}, "batch_size must be a positive number, got 0"),
    ({"epochs": 1.5}, "epochs must be an integer, got 1.5"),
    ({"learning_rate": float("nan")}, "learning_rate must be a positive number, got nan"),
    ({"max_seq_length": 4}, "max_seq_length must be in [5, 512], got 4"),
    ({"virt_alpha": -0.5}, "virt_alpha must be >= 0, got -0.5"),
    ({"warmup_ratio": 1.0}, "warmup_ratio must be in [0, 1), got 1.0"),
    ({"dropout_rate": "high"}, "dropout_rate must be a number, got 'high'"),
    ({"seed": 2 ** 32}, "seed must be an integer in [0, 2**32), got 4294967296"),
    ({"fusion": "sum"}, "fusion must be one of ('paper', 'code', 'concat'), got 'sum'"),
    ({"precision": "float8"}, "precision must be one of ('float32', 'mixed_bfloat16', "
                              "'mixed_float16', 'auto'), got 'float8'"),
    ({"poly_codes": 0}, "poly_codes must be a positive number, got 0"),
    ({"augment": "pool,nope"}, "augment: unknown sources ['nope']"),
    ({"augment": ["pool"], "augment_multiple": 0}, "augment_multiple must be a positive number"),
    ({"task_weight": 0.0, "virt_alpha": 0.0}, "nothing to train on"),
]


@pytest.mark.parametrize("changes,message", BAD, ids=[m for _, m in BAD])
def test_each_check_of_the_schema_refuses_its_bad_values(changes, message):
    with pytest.raises(ConfigError) as info:
        load_config("rte", "virt", overrides=changes)
    assert message in str(info.value)
    with pytest.raises(ConfigError):  # a copy is checked too
        load_config("rte", "virt").replace(**changes)


def test_options_are_a_frozen_typed_mapping():
    options = load_config("mnli", "poly", overrides={"augment": "pool,edit"})
    assert options.augment == ["pool", "edit"] and options["augment"] == ["pool", "edit"]
    assert options.replace(poly_codes=None).poly_codes is None  # an optional one may be null
    assert options.eval_split == "dev_matched" and options.get("model") == "poly"
    assert list(options) == list(schema.NAMES) and len(dict(options)) == len(schema.NAMES)
    assert "not_an_option" not in options and options.get("not_an_option", 3) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.seed = 3
    assert options.replace(seed=3).seed == 3 and options.seed == 0


def test_the_heads_take_their_defaults_and_options_from_the_schema(tiny_config):
    from virt_tf.models import registry
    from virt_tf.heads.base import PairHead
    for spec in registry.MODELS.values():
        for path in filter(None, (spec.head, spec.simple_head)):
            head = registry._import(path)  # pylint: disable=protected-access
            assert issubclass(head, PairHead)
            assert {name for _, name in head.RUN_OPTIONS} <= set(schema.NAMES), path
        assert {name for _, name in spec.options} <= set(schema.NAMES), spec.name
    poly = registry.build_classifier("poly", tiny_config, 2, {})
    assert poly.head.codes == defaults()["poly_codes"] and poly.head.first_m is None
    dipair = registry.build_classifier("dipair", tiny_config, 2,
                                       load_config("rte", "dipair", overrides={
                                           "dipair_x_tokens": 3, "dropout_rate": 0.3}))
    assert (dipair.head.x_tokens, dipair.head.y_tokens) == (3, defaults()["dipair_y_tokens"])
    assert dipair.head.dropout_rate == 0.3
    assert dipair.head.num_heads == tiny_config.num_attention_heads


def test_pipeline_options_split_run_options_from_inputs(tmp_path):
    run = pipeline_options("pairs", "siamese", model_dir=str(tmp_path), epochs=2,
                           dropout_rate=0.2, data_dir="d", encoder_preset="tiny",
                           label_names=("no", "yes"), recipe="distill_aug")
    assert run.options.epochs == 2 and run.options.recipe == "distill_aug"
    assert run.data_dir == "d" and run.encoder_preset == "tiny"
    assert run.encoder_dropout_rate == 0.2  # as --dropout_rate: the encoder's too
    assert pipeline_options(model_dir="m").encoder_dropout_rate is None
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['data_folder'\]"):
        pipeline_options(model_dir="m", data_folder="d")
    with pytest.raises(ConfigError, match="--model_dir is required"):
        pipeline_options(model_dir="")


def test_debug_options_are_checked():
    assert DebugOptions(nan_at_step=2, write_fault="model:ENOSPC").nan_at_step == 2
    with pytest.raises(ConfigError, match="--debug_nan_at_step must be >= 1, got 0"):
        DebugOptions(nan_at_step=0)
    with pytest.raises(ConfigError, match="--debug_write_fault: expected checkpoint@STEP"):
        DebugOptions(write_fault="disk:full")
    DebugOptions(overflow_at_step=2).check_overflow("mixed_float16")
    with pytest.raises(ConfigError, match="needs a step >= 1 and --precision=mixed_float16"):
        DebugOptions(overflow_at_step=2).check_overflow("float32")


def test_parse_overrides_types_run_options_and_leaves_the_rest():
    given = ["--encoder_preset=tiny", "--batch_size=8", "--learning_rate=5e-5",
             "--nolength_buckets", "--virt_layers=1,2", "--batch_size=16", "--verbose=2"]
    assert schema.parse_overrides(given) == {"batch_size": 16, "learning_rate": 5e-5,
                                      "length_buckets": False, "virt_layers": [1, 2]}
    with pytest.raises(ConfigError):
        schema.parse_overrides(["--batch_size=eight"])
