"""Typed configuration: one dataclass per component, composed into :class:`DyadGenConfig`.

A run's configuration is built in three layers, each overriding the one before:

1. a preset from :data:`dyadgen.config.presets.PRESETS` (``real``, ``real-0.5b``, ``tiny``), the same
   classes at two sizes;
2. a YAML file in ``configs/`` whose top-level ``preset:`` names the preset and whose sections
   (``data:``, ``backbone:``, ...) override its fields;
3. dotted ``key=value`` overrides from the command line (``train.max_steps=100``).

Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key. The resolved
config (``to_dict``) is what gets written beside every run and checkpoint as ``config.json``.
"""

from dyadgen.config.loading import (
    DROPPED,
    RENAMED,
    apply_override,
    config_from_dict,
    load_config,
    merge_into,
)
from dyadgen.config.presets import PRESETS, preset
from dyadgen.config.schema import (
    AudioTokenizerConfig,
    BackboneConfig,
    ConfigError,
    DataConfig,
    DecoderConfig,
    DyadGenConfig,
    InferConfig,
    ModelConfig,
    TrainConfig,
    VAEConfig,
    audio_margin,
)

__all__ = [
    "DROPPED", "PRESETS", "RENAMED", "AudioTokenizerConfig", "BackboneConfig", "ConfigError", "DataConfig",
    "DecoderConfig", "DyadGenConfig", "InferConfig", "ModelConfig", "TrainConfig", "VAEConfig", "apply_override",
    "audio_margin", "config_from_dict", "load_config", "merge_into", "preset",
]
