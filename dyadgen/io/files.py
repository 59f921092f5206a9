"""Files and folders written whole: never seen half-written (write a hidden temporary, then rename)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def replace_folder(tmp: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Put the finished folder ``tmp`` at ``folder``. An existing ``folder`` is first moved aside and removed
    only after the rename, so at every moment one whole version (old or new) is there or beside it."""
    tmp, folder = Path(tmp), Path(folder)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(folder)
    return folder
