"""`dyadgen verify-shards SHARDS`: check every shard against the sizes and checksums its manifest recorded."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from dyadgen.cache.shards import read_manifest
from dyadgen.cache.windows import verify_shard
from dyadgen.io.files import write_text_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", help="folder `dyadgen preprocess` wrote (with manifest.json)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def run(args: argparse.Namespace) -> int:
    root = Path(args.shards)
    manifest = read_manifest(root)
    entries = [e for split in manifest["splits"].values() for e in split]
    total = sum(e.get("size", 0) for e in entries)
    checks = []
    with tqdm(total=total, unit="B", unit_scale=True, desc="verify-shards") as bar:
        for entry in entries:
            checks.append(verify_shard(root, entry, progress=bar.update))
    bad = [c for c in checks if c.problem]
    print(f"{len(checks)} shards, {sum(c.samples for c in checks)} training windows: {len(bad)} bad shards, "
          f"{sum(len(c.bad_samples) for c in bad)} bad members, {sum(c.lost for c in bad)} training windows lost")
    for c in bad:
        print(f"  {c.problem}")
        for line in c.bad_samples:
            print(f"    {line}")
    if args.json:
        write_text_atomic(args.json, json.dumps({"shards": len(checks), "bad": [
            {"shard": str(c.path), "problem": c.problem, "bad_samples": c.bad_samples, "windows_lost": c.lost}
            for c in bad]}, indent=1))
    return 1 if bad else 0
