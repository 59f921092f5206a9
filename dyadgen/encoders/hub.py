"""Find model files locally or in the Hugging Face cache, never silently over the network in tests.

A name is a local path, or ``repo_id`` / ``repo_id:filename`` on the Hub. Files come from the local
cache first; a download is tried only when ``HF_HUB_OFFLINE`` is not set, and when it fails the
UserError says which file to download and where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import hf_hub_download

from dyadgen.errors import UserError


def resolve_file(name: str, filename: str, *, what: str) -> Path:
    """A local file for ``filename`` in ``name`` (a folder, or a Hub repo id)."""
    local = Path(name)
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            raise UserError(f"{path}: missing ({what} needs {filename} in {local})")
        return path
    if local.is_file():
        return local

    try:
        return Path(hf_hub_download(name, filename, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        try:
            return Path(hf_hub_download(name, filename))
        except Exception:
            pass
    raise UserError(
        f"{name}: cannot load {what}: {filename} is not in the local Hugging Face cache and the Hub cannot "
        f"be reached. Download https://huggingface.co/{name}/blob/main/{filename} on a connected machine "
        f"(`huggingface-cli download {name} {filename}`) and copy the cache, or pass a local folder "
        f"holding {filename}"
    )


def resolve_folder(name: str, *, subfolder: str = "", what: str, config_name: str = "config.json") -> Path:
    """A local folder holding ``config_name`` (and its weights) for ``name``."""
    local = Path(name) / subfolder if subfolder else Path(name)
    if local.is_dir():
        if not (local / config_name).is_file():
            raise UserError(f"{local}: missing {config_name} ({what})")
        return local
    if Path(name).exists():
        raise UserError(f"{name}: not a folder ({what} is a folder with {config_name})")
    inner = f"{subfolder}/{config_name}" if subfolder else config_name
    return resolve_file(name, inner, what=what).parent
