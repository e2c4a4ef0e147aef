"""Atomic file writes, content fingerprints and device resolution.

A file written by cmakit either exists complete or not at all: every writer goes through
:func:`atomic_path`, which hands out a temporary name in the same folder and renames it into
place only when the block finishes without an exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process's file-creation mask, read without changing it (Linux), else set and reset."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched. The file gets
    the permissions a plain ``open()`` would give it (``0o666`` less the umask), so teammates
    on a shared machine can read a run's outputs when the umask allows it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a plain open() honours the umask
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (NaN/Inf are refused: they are not JSON)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False) + "\n")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """The JSON objects of a JSON-lines file, one per non-empty line.

    Raises:
        FileNotFoundError: the file is missing (the run that writes it has not finished).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run that writes it has not finished.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fingerprint(*parts: Any, length: int = 16) -> str:
    """A short hex digest of JSON-serialisable ``parts`` (dict keys sorted).

    Use it as a cache key over exactly the inputs that change an artifact.
    """
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_digest(path: str | os.PathLike, *, length: int = 16, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex, truncated to ``length``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:length]


#: Files whose bytes :func:`tree_digest` reads (image lists); of the others, only size and time.
LIST_SUFFIXES = (".txt",)


def tree_digest(root: str | os.PathLike, *, length: int = 16) -> dict[str, Any]:
    """What a data folder holds, cheaply: every file's path, size and modification time, and the
    bytes of its image lists (``*.txt``: OpenOOD's ``benchmark_imglist``), without reading any
    image.

    One ``stat`` per file, once per run: 43-49 µs per file measured on a 2-core machine busy
    with other jobs (load 9), which puts ImageNet-1k's 1.33 M files near one minute there; a
    network file system is slower. Symlinks are followed, as the data loaders follow them.

    Args:
        root: A data root (ImageNet, MOS or OpenOOD); a missing one is reported, not an error.

    Returns:
        ``{"files": count, "bytes": total size, "digest": hex}``; ``{"missing": path}`` when
        ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        return {"missing": str(root)}
    h, totals = hashlib.sha256(), [0, 0]
    _digest_folder(str(root), "", h, totals)
    return {"files": totals[0], "bytes": totals[1], "digest": h.hexdigest()[:length]}


def _digest_folder(folder: str, rel: str, h: Any, totals: list[int]) -> None:
    """Add one folder's files (one ``update`` per folder) and then its sub-folders, sorted."""
    lines, subfolders = [], []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir():
                subfolders.append(entry)
                continue
            try:
                st = entry.stat()
            except OSError:  # a dangling link: part of what the folder holds
                lines.append(f"{rel}{entry.name}:unreadable")
                continue
            totals[0], totals[1] = totals[0] + 1, totals[1] + st.st_size
            lines.append(f"{rel}{entry.name}:{st.st_size}:{st.st_mtime_ns}")
            if entry.name.endswith(LIST_SUFFIXES):
                lines.append(file_digest(entry.path))
    h.update("\n".join(lines).encode())
    for sub in subfolders:
        h.update(f"\n{rel}{sub.name}/".encode())
        _digest_folder(sub.path, f"{rel}{sub.name}/", h, totals)


CACHE_ENV = "CMAKIT_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder shared by all runs: ``cache_dir``, else ``$CMAKIT_CACHE``, else the
    project's ``.cache/cmakit`` (a source checkout: the folder above the package holds a
    ``pyproject.toml``), else ``~/.cache/cmakit`` (an installed package).
    """
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / ".cache" / "cmakit"
    return Path.home() / ".cache" / "cmakit"


def resolve_device(device: str = "auto") -> str:
    """Turn ``"auto"`` into ``"cuda"`` when a GPU is visible, else ``"cpu"``.

    Any other value (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) is returned unchanged after
    a check that torch knows it.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from err
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but no CUDA GPU is visible; use 'cpu'.")
    return device


#: The Cache Directory Tagging Specification's tag: backup tools skip a folder that holds it,
#: and cmakit's messages know a file under it as one that cmakit can recompute.
CACHE_TAG = "CACHEDIR.TAG"
_CACHE_TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by cmakit (pretrained models, worlds).\n"
)


def tag_cache(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and mark it as a cache (:data:`CACHE_TAG`); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tag = folder / CACHE_TAG
    if not tag.is_file():
        with atomic_path(tag) as tmp:
            tmp.write_text(_CACHE_TAG_TEXT)
    return folder
