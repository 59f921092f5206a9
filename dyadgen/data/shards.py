"""Preprocessed samples in webdataset tar shards: one safetensors blob per sample plus a manifest.

A sample (one fixed-length window of one video) holds tokens long [P,T], latents bf16 [P,T,c,h,w],
refs bf16 [P,K,c,h,w] (K candidate reference latents per person from other moments of the same
video and side), speaking uint8 [P,T], emotion long [P,T], mask bool [T]; its JSON metadata holds
the dialogue text, the video name, the split and the start frame.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

from torch import Tensor

MANIFEST = "manifest.json"


def encode_sample(tensors: dict[str, Tensor], meta: dict) -> dict[str, bytes]:
    from safetensors.torch import save

    return {"safetensors": save({k: v.contiguous() for k, v in tensors.items()}),
            "json": json.dumps(meta, ensure_ascii=False).encode()}


def write_shard(path: str | os.PathLike, samples: list[tuple[str, dict[str, Tensor], dict]]) -> int:
    """Write samples [(key, tensors, meta)] to a tar shard atomically; returns the sample count."""
    import webdataset as wds

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with wds.TarWriter(str(tmp)) as sink:
        for key, tensors, meta in samples:
            sink.write({"__key__": key, **encode_sample(tensors, meta)})
    os.replace(tmp, path)
    return len(samples)


def shard_keys(path: str | os.PathLike) -> list[str]:
    with tarfile.open(path) as tar:
        return [m.name[: -len(".safetensors")] for m in tar.getmembers() if m.name.endswith(".safetensors")]


class ShardReader:
    """Random access to samples of tar shards; keeps one shard open at a time."""

    def __init__(self):
        self._path: str | None = None
        self._tar: tarfile.TarFile | None = None

    def read(self, path: str | os.PathLike, key: str) -> tuple[dict[str, Tensor], dict]:
        from safetensors.torch import load

        path = str(path)
        if path != self._path:
            self.close()
            self._tar, self._path = tarfile.open(path), path
        tensors = load(self._tar.extractfile(f"{key}.safetensors").read())
        meta = json.load(io.BytesIO(self._tar.extractfile(f"{key}.json").read()))
        return tensors, meta

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
        self._tar = self._path = None


def write_manifest(folder: str | os.PathLike, info: dict) -> dict:
    """Index every finished shard (``<split>/*.tar``) of ``folder`` into manifest.json."""
    folder = Path(folder)
    splits: dict[str, list[dict]] = {}
    for shard in sorted(folder.glob("*/*.tar")):
        keys = shard_keys(shard)
        if keys:
            splits.setdefault(shard.parent.name, []).append({"path": str(shard.relative_to(folder)), "keys": keys})
    manifest = {**info, "splits": splits,
                "num_samples": {s: sum(len(x["keys"]) for x in shards) for s, shards in splits.items()}}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, folder / MANIFEST)
    return manifest


def read_manifest(folder: str | os.PathLike) -> dict:
    from dyadgen.errors import UserError

    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: no shard manifest (run `dyadgen preprocess` first)")
    return json.loads(path.read_text())
