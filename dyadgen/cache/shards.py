"""Preprocessed videos in webdataset tar shards: one shard per video, safetensors members, a manifest.

A shard holds its video once (dyadgen.cache.windows lays the members out): per segment (the whole
raw video, or one turn clip) a head with the audio codes and labels of every frame and latent
blocks of a fixed number of frames, plus one pool of reference latents for the video. Training
windows are index ranges into a segment, never stored copies, so every latent is stored once.

Shards are verifiable: each ``<name>.tar`` has a record ``<name>.tar.json`` (its size, sha256, every
member's blob sha256 and the segments' lengths) written before the tar is renamed into place, and
the manifest gathers them. :func:`verify_shard` checks a shard against its record; a read checks the
blob it returns and raises :class:`BadSample` (one line: shard, member, what is wrong) for anything
unreadable, so loaders can skip and count it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import webdataset as wds
from safetensors.torch import load, save
from torch import Tensor

from dyadgen.errors import UserError
from dyadgen.io.files import write_text_atomic

MANIFEST = "manifest.json"
RECORD_SUFFIX = ".json"  # <name>.tar -> <name>.tar.json
FORMAT = 2  # 2: each video stored once, windows are index ranges (1: every window stored whole)


class BadSample(UserError):
    """A sample that cannot be read or fails its checksum (truncated shard, bit rot, missing file)."""


def encode_sample(tensors: dict[str, Tensor], meta: dict | None = None) -> dict[str, bytes]:
    encoded = {"safetensors": save({k: v.contiguous() for k, v in tensors.items()})}
    if meta is not None:
        encoded["json"] = json.dumps(meta, ensure_ascii=False).encode()
    return encoded


def sha256_file(path: Path, chunk: int = 1 << 22, progress=None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()


class ShardWriter:
    """Writes one shard member by member (a long video is never held whole), atomically: members go
    to a hidden temporary tar; :meth:`finish` writes the record and renames the tar into place (the
    record first, so a finished shard always has one); leaving the ``with`` block on an error removes
    the temporary file, so a failed video leaves nothing behind."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._sink = wds.TarWriter(str(self.tmp))
        self.keys: list[str] = []
        self.blobs: list[str] = []

    def add(self, key: str, tensors: dict[str, Tensor], meta: dict | None = None) -> None:
        encoded = encode_sample(tensors, meta)
        self.blobs.append(hashlib.sha256(encoded["safetensors"]).hexdigest())
        self.keys.append(key)
        self._sink.write({"__key__": key, **encoded})

    def finish(self, **info) -> dict:
        """Close the tar, write its record (with ``info``) and rename both into place."""
        self._sink.close()
        record = {"keys": self.keys, "size": self.tmp.stat().st_size, "sha256": sha256_file(self.tmp),
                  "blobs": self.blobs, **info}
        write_text_atomic(self.path.with_name(self.path.name + RECORD_SUFFIX), json.dumps(record))
        os.replace(self.tmp, self.path)
        return record

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if self.tmp.exists():  # not finished: an error on the way
            self._sink.close()
            self.tmp.unlink()


def shard_record(path: Path) -> dict | None:
    """The record of a finished shard (its ``.tar.json``); None for a tar without one, which no
    finished shard is (the record is renamed into place before the tar)."""
    record_path = path.with_name(path.name + RECORD_SUFFIX)
    return json.loads(record_path.read_text()) if record_path.is_file() else None


class ShardReader:
    """Members of one tar shard at a time, by name: the shard's headers are read once, in order, when
    it is opened (so the members before the damage in a truncated or corrupted shard stay readable),
    and it stays open for the next member."""

    def __init__(self):
        self._path: str | None = None
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        self._damage = ""  # why indexing stopped before the end ("" when it reached the end)

    def _open(self, path: str) -> None:
        self.close()
        self._tar, self._path = tarfile.open(path), path
        while True:
            try:
                member = self._tar.next()
            except tarfile.TarError as err:
                self._damage = f"{type(err).__name__}: {err}"
                break
            if member is None:
                break
            self._members[member.name] = member

    def _extract(self, name: str) -> bytes:
        member = self._members.get(name)
        if member is None:
            raise KeyError(f"{name} not in the shard" + (f" (it ends early: {self._damage})" if self._damage else ""))
        return self._tar.extractfile(member).read()

    def read(self, path: str | os.PathLike, key: str, sha256: str | None = None,
             meta: bool = True) -> tuple[dict[str, Tensor], dict]:
        """A member's tensors and metadata (``{}`` without a JSON part or with ``meta=False``);
        :class:`BadSample` when it cannot be read or its blob does not have the ``sha256`` the
        manifest recorded."""
        path = str(path)
        try:
            if path != self._path:
                self._open(path)
            blob = self._extract(f"{key}.safetensors")
            if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
                raise BadSample(f"{path}: sample {key}: checksum mismatch (the blob changed after preprocessing)")
            tensors = load(blob)
            info = json.loads(self._extract(f"{key}.json")) if meta and f"{key}.json" in self._members else {}
        except BadSample:
            raise
        except Exception as err:  # tarfile, safetensors and json raise many kinds for damaged files
            self.close()
            reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
            raise BadSample(f"{path}: sample {key}: unreadable ({type(err).__name__}: {reason})") from None
        return tensors, info

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
        self._tar = self._path = None
        self._members, self._damage = {}, ""


def write_manifest(folder: str | os.PathLike, info: dict) -> dict:
    """Index every finished shard (``<split>/*.tar``) of ``folder`` into manifest.json, with each
    shard's record: size, sha256, member blob checksums, segments and window count."""
    folder = Path(folder)
    splits: dict[str, list[dict]] = {}
    for shard in sorted(folder.glob("*/*.tar")):
        record = shard_record(shard)
        if record and record.get("windows"):
            splits.setdefault(shard.parent.name, []).append({"path": str(shard.relative_to(folder)), **record})
    manifest = {**info, "format": FORMAT, "splits": splits,
                "num_samples": {s: sum(x.get("windows", 0) for x in shards) for s, shards in splits.items()}}
    write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: no shard manifest (run `dyadgen preprocess` first)")
    manifest = json.loads(path.read_text())
    if manifest.get("format", 1) != FORMAT:
        raise UserError(f"{path}: shards in format {manifest.get('format', 1)} (each window stored whole), this "
                        f"dyadgen reads format {FORMAT} (each video stored once): run `dyadgen preprocess` again")
    return manifest
