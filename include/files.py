"""Local file-system steps that several stages share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def replace_dir(staged: Path, target: Path) -> None:
    """Put the folder ``staged`` in place of ``target``, so a reader sees the old folder or the new one.

    Two renames on one file system (``os.replace``): ``target`` moves aside to a hidden sibling, then
    ``staged`` takes its name, then the old folder is removed. Siblings of ``target`` are never
    touched. When ``staged`` does not exist (nothing to publish, e.g. a date with no rows), ``target``
    is removed. ``staged`` and ``target`` must be on the same file system (``OSError`` otherwise).
    """
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    if staged.exists():
        os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)
