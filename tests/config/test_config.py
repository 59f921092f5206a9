"""Config: presets, YAML files, dotted overrides, and errors that name the key."""

import json

import pytest

from dyadgen.config import ConfigError, DyadGenConfig, config_from_dict, load_config
from dyadgen.models import DyadGen


def test_tiny_is_the_default_and_real_presets_differ():
    tiny, real, small = load_config(), load_config(preset_name="real"), load_config(preset_name="real-0.5b")
    assert tiny.preset == "tiny" and tiny.backbone.hidden_size < 512
    assert (real.backbone.hidden_size, real.backbone.num_hidden_layers) == (2048, 36)
    assert (real.backbone.num_attention_heads, real.backbone.num_key_value_heads) == (16, 2)
    assert (real.backbone.intermediate_size, real.backbone.vocab_size) == (11008, 151936)
    assert real.vae.latent_channels == 16 and real.vae.shift_factor == 0.1159 and real.vae.scaling_factor == 0.3611
    assert small.backbone.hidden_size == 896 and small.backbone.name_or_path == "Qwen/Qwen2.5-0.5B"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: real\ntrain:\n  max_steps: 7\n  lr: 1e-3\nvae:\n  block_out_channels: [8, 16]\n")
    cfg = load_config(path, ["train.max_steps=9", "data.height=64", "infer.layout=separate"])
    assert cfg.preset == "real" and cfg.backbone.hidden_size == 2048
    assert cfg.train.max_steps == 9 and cfg.train.lr == 1e-3
    assert cfg.vae.block_out_channels == (8, 16)
    assert cfg.data.height == 64 and cfg.infer.layout == "separate"


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml"))
    assert configs
    for path in configs:
        assert isinstance(load_config(path), DyadGenConfig)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.max_step=3", "train.max_step: unknown config key"),
        ("trian.max_steps=3", "trian: unknown config section"),
        ("train.max_steps=three", "train.max_steps: expected an integer"),
        ("train.lr=fast", "train.lr: expected a number"),
        ("infer.layout=grid", "infer.layout: 'grid' is not one of"),
        ("infer.guidance_interval=[0.2]", "infer.guidance_interval: expected 2 values, got 1"),
        ("backbone.tie_word_embeddings=2", "backbone.tie_word_embeddings: expected true or false"),
        ("train=3", "train: is a section"),
        ("max_steps", "an override must look like section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(overrides=[override])


def test_unknown_yaml_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("decoder:\n  depht: 3\n")
    with pytest.raises(ConfigError, match="decoder.depht: unknown config key"):
        load_config(path)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(overrides=["train.max_steps=11", "vae.block_out_channels=[4,8,8]"], preset_name="real")
    cfg.save(tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    again = config_from_dict(data)
    assert again == cfg
    assert load_config(tmp_path / "config.json") == cfg


def test_older_checkpoints_keys_still_load(tmp_path):
    """A checkpoint written before keys were renamed or dropped loads with the same meaning; a dropped key
    set to something it could never do is an error that says why."""
    data = load_config().to_dict()
    data["infer"]["cfg"] = data["infer"].pop("guidance") + 1.5  # renamed to guidance
    data["infer"]["device"] = "cpu"  # never read: the device is chosen at load
    data["vae"]["kind"] = "autoencoder_kl"  # the only VAE there is
    data["infer"]["steps"] = data["infer"].pop("euler_steps") + 3  # renamed to euler_steps
    data["model"]["window_steps"] = data["model"].pop("history_steps") + 2  # renamed to history_steps
    cfg = config_from_dict(data)
    assert cfg.infer.guidance == load_config().infer.guidance + 1.5
    assert cfg.infer.euler_steps == load_config().infer.euler_steps + 3
    assert cfg.model.history_steps == load_config().model.history_steps + 2
    fresh = load_config().to_dict()
    assert cfg == config_from_dict({**fresh, "infer": {**fresh["infer"], "guidance": cfg.infer.guidance,
                                                      "euler_steps": cfg.infer.euler_steps},
                                    "model": {**fresh["model"], "history_steps": cfg.model.history_steps}})
    # the model's own saved config (model_config.json of an inference folder) reads the old names too
    model = DyadGen(data["backbone"], data["decoder"], data["model"], 16, 8, 8, 6)
    assert model.cfg.history_steps == cfg.model.history_steps
    path = tmp_path / "c.yaml"
    path.write_text("vae:\n  kind: autoencoder_tiny\n")
    with pytest.raises(ConfigError, match="vae.kind: no longer a setting .*vae.fast_decoder"):
        load_config(path)
