"""Building a config: a preset, then a YAML or JSON file's sections, then dotted ``key=value``
overrides, each checked against the dataclasses' types (unknown keys and wrong types raise
:class:`ConfigError` naming the key); keys renamed or dropped since older checkpoints were written are
mapped here."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from dyadgen.config.presets import preset
from dyadgen.config.schema import ConfigError, DyadGenConfig


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                preset_name: str | None = None) -> DyadGenConfig:
    """Preset <- YAML file <- ``key=value`` overrides. Any of the three may be absent.

    A YAML file's ``preset:`` picks the preset (``preset_name`` overrides it); a ``.json`` path is a
    resolved config as written by :meth:`DyadGenConfig.save`.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (yaml.YAMLError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({err})") from None
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    name = preset_name or data.get("preset", "tiny")
    cfg = preset(str(name))
    _merge(cfg, {k: v for k, v in data.items() if k != "preset"}, prefix="")
    for item in overrides or []:
        apply_override(cfg, item)
    return cfg


def config_from_dict(data: dict[str, Any]) -> DyadGenConfig:
    """Rebuild a config from :meth:`DyadGenConfig.to_dict` output (e.g. a checkpoint's config.json)."""
    cfg = preset(str(data.get("preset", "tiny")))
    _merge(cfg, {k: v for k, v in data.items() if k != "preset"}, prefix="")
    return cfg


def apply_override(cfg: DyadGenConfig, item: str) -> None:
    """Apply one ``section.key=value`` override; the value is parsed as YAML then type-checked."""
    if "=" not in item:
        raise ConfigError(f"{item}: an override must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    target: Any = cfg
    for i, part in enumerate(parts[:-1]):
        sub = getattr(target, part, None) if _has_field(target, part) else None
        if not dataclasses.is_dataclass(sub):
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: unknown config section")
        target = sub
    _set_field(target, parts[-1], value, key)


# keys renamed since checkpoints were written: (section, old name) -> new name
RENAMED = {("infer", "cfg"): "guidance", ("model", "window_steps"): "history_steps",
           ("infer", "steps"): "euler_steps", ("eval", "steps"): "euler_steps"}
# keys that older checkpoints hold and that never did anything: skipped on load when their value is one
# that meant nothing (None: any value), an error naming the reason otherwise
DROPPED: dict[tuple[str, str], tuple[tuple | None, str]] = {
    ("infer", "device"): (None, "the device is chosen where a checkpoint is loaded (--device)"),
    ("vae", "kind"): (("autoencoder_kl",), "the VAE is an AutoencoderKL; a tiny decoder is vae.fast_decoder"),
}


def merge_into(obj: Any, data: dict[str, Any], section: str = "") -> None:
    """Set the fields of a config dataclass (nested sections too) from a mapping, with type checks;
    ``section`` names where ``obj`` sits in the root config (for renamed keys and error messages)."""
    _merge(obj, data, prefix=f"{section}." if section else "")


def _has_field(obj: Any, name: str) -> bool:
    return dataclasses.is_dataclass(obj) and name in {f.name for f in dataclasses.fields(obj)}


def _merge(obj: Any, data: dict[str, Any], prefix: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or '<root>'}: expected a mapping, got {type(data).__name__}")
    for key, value in data.items():
        if (prefix.rstrip("."), key) in DROPPED:
            harmless, why = DROPPED[prefix.rstrip("."), key]
            if harmless is None or value in harmless:
                continue
            raise ConfigError(f"{prefix}{key}: no longer a setting ({why})")
        key = RENAMED.get((prefix.rstrip("."), key), key)
        full = f"{prefix}{key}"
        if not _has_field(obj, key):
            raise ConfigError(f"{full}: unknown config key")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, prefix=f"{full}.")
        else:
            _set_field(obj, key, value, full)


def _set_field(obj: Any, name: str, value: Any, full_key: str) -> None:
    if not _has_field(obj, name):
        raise ConfigError(f"{full_key}: unknown config key")
    if dataclasses.is_dataclass(getattr(obj, name)):
        raise ConfigError(f"{full_key}: is a section; set one of its keys, e.g. {full_key}.<key>=...")
    hint = typing.get_type_hints(type(obj))[name]
    setattr(obj, name, _coerce(value, hint, full_key))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint``, allowing the lossless conversions YAML needs."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} does not match {hint}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        elem = args[0] if args else Any
        if origin is tuple and len(args) > 1 and args[-1] is not Ellipsis and len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        items = [_coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported config type {hint}")
