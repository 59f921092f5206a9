"""Preprocessed samples in webdataset tar shards: one safetensors blob per sample plus a manifest.

A sample (one fixed-length window of one video) holds tokens long [P,T] (and tokens_before [P,pre],
tokens_after [P,post]: the audio around the window that the model reads), latents bf16 [P,T,c,h,w],
refs bf16 [P,K,c,h,w] (K candidate reference latents per person from other moments of the same
video and side), speaking uint8 [P,T], emotion long [P,T], mask bool [T]; its JSON metadata holds
the dialogue text, the video name, the split and the start frame.

Shards are verifiable: each ``<name>.tar`` has a record ``<name>.tar.json`` (its size, sample count,
sha256, and every sample blob's sha256) written before the tar is renamed into place, and the
manifest gathers them. :func:`verify_shard` checks a shard against its record; a read checks the
blob it returns and raises :class:`BadSample` (one line: shard, key, what is wrong) for anything
unreadable, so loaders can skip and count it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from dyadgen.errors import UserError
from dyadgen.io.files import write_text_atomic

MANIFEST = "manifest.json"
RECORD_SUFFIX = ".json"  # <name>.tar -> <name>.tar.json


class BadSample(UserError):
    """A sample that cannot be read or fails its checksum (truncated shard, bit rot, missing file)."""


def encode_sample(tensors: dict[str, Tensor], meta: dict) -> dict[str, bytes]:
    from safetensors.torch import save

    return {"safetensors": save({k: v.contiguous() for k, v in tensors.items()}),
            "json": json.dumps(meta, ensure_ascii=False).encode()}


def sha256_file(path: Path, chunk: int = 1 << 22, progress=None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()


def write_shard(path: str | os.PathLike, samples: list[tuple[str, dict[str, Tensor], dict]]) -> int:
    """Write samples [(key, tensors, meta)] to a tar shard and its record, atomically (the record is
    renamed into place before the tar, so a finished shard always has one); returns the sample count."""
    import webdataset as wds

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    blobs = []
    with wds.TarWriter(str(tmp)) as sink:
        for key, tensors, meta in samples:
            encoded = encode_sample(tensors, meta)
            blobs.append(hashlib.sha256(encoded["safetensors"]).hexdigest())
            sink.write({"__key__": key, **encoded})
    record = {"keys": [key for key, _, _ in samples], "size": tmp.stat().st_size, "sha256": sha256_file(tmp),
              "blobs": blobs}
    write_text_atomic(path.with_name(path.name + RECORD_SUFFIX), json.dumps(record))
    os.replace(tmp, path)
    return len(samples)


def shard_keys(path: str | os.PathLike) -> list[str]:
    with tarfile.open(path) as tar:
        return [m.name[: -len(".safetensors")] for m in tar.getmembers() if m.name.endswith(".safetensors")]


def shard_record(path: Path) -> dict:
    """The record of a finished shard: its ``.tar.json``, or (a shard written before records existed)
    one computed from the tar itself."""
    record_path = path.with_name(path.name + RECORD_SUFFIX)
    if record_path.is_file():
        return json.loads(record_path.read_text())
    blobs, keys = [], []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".safetensors"):
                keys.append(member.name[: -len(".safetensors")])
                blobs.append(hashlib.sha256(tar.extractfile(member).read()).hexdigest())
    return {"keys": keys, "size": path.stat().st_size, "sha256": sha256_file(path), "blobs": blobs}


class ShardReader:
    """Random access to samples of tar shards; keeps one shard open at a time. A shard's members are
    indexed by reading its headers in order, so the samples before the damage in a truncated or
    corrupted shard stay readable."""

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

    def read(self, path: str | os.PathLike, key: str, sha256: str | None = None) -> tuple[dict[str, Tensor], dict]:
        """A sample's tensors and metadata; :class:`BadSample` when it cannot be read or its blob
        does not have the ``sha256`` the manifest recorded."""
        from safetensors.torch import load

        path = str(path)
        try:
            if path != self._path:
                self._open(path)
            blob = self._extract(f"{key}.safetensors")
            if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
                raise BadSample(f"{path}: sample {key}: checksum mismatch (the blob changed after preprocessing)")
            tensors = load(blob)
            meta = json.loads(self._extract(f"{key}.json"))
        except BadSample:
            raise
        except Exception as err:  # tarfile, safetensors and json raise many kinds for damaged files
            self.close()
            reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
            raise BadSample(f"{path}: sample {key}: unreadable ({type(err).__name__}: {reason})") from None
        return tensors, meta

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
        self._tar = self._path = None
        self._members, self._damage = {}, ""


def write_manifest(folder: str | os.PathLike, info: dict) -> dict:
    """Index every finished shard (``<split>/*.tar``) of ``folder`` into manifest.json, with each
    shard's size, sha256 and per-sample blob checksums from its record."""
    folder = Path(folder)
    splits: dict[str, list[dict]] = {}
    for shard in sorted(folder.glob("*/*.tar")):
        record = shard_record(shard)
        if record["keys"]:
            splits.setdefault(shard.parent.name, []).append({"path": str(shard.relative_to(folder)), **record})
    manifest = {**info, "splits": splits,
                "num_samples": {s: sum(len(x["keys"]) for x in shards) for s, shards in splits.items()}}
    write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


@dataclass
class ShardCheck:
    path: Path
    problem: str = ""  # what is wrong with the file ("": intact)
    bad_samples: list[str] = field(default_factory=list)  # one line per unreadable or changed sample
    samples: int = 0


def verify_shard(folder: Path, entry: dict, progress=None) -> ShardCheck:
    """Check one manifest entry's shard: intact when its size and sha256 match; otherwise every
    sample is read and checked against its blob checksum (a missing shard loses all of them)."""
    path = folder / entry["path"]
    check = ShardCheck(path, samples=len(entry["keys"]))
    if not path.is_file():
        check.problem = f"{path}: missing ({len(entry['keys'])} samples)"
        check.bad_samples = [f"{path}: sample {key}: missing shard" for key in entry["keys"]]
        return check
    size = path.stat().st_size
    if "sha256" in entry and size == entry["size"] and sha256_file(path, progress=progress) == entry["sha256"]:
        return check
    check.problem = (f"{path}: {size} bytes, the manifest says {entry['size']}" if size != entry.get("size", size)
                     else f"{path}: checksum mismatch")
    reader = ShardReader()
    for key, blob in zip(entry["keys"], entry.get("blobs") or [None] * len(entry["keys"]), strict=True):
        try:
            reader.read(path, key, blob)
        except BadSample as err:
            check.bad_samples.append(str(err))
    reader.close()
    return check


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: no shard manifest (run `dyadgen preprocess` first)")
    return json.loads(path.read_text())
