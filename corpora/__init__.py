"""Corpus registry: the evaluation files by name, with sizes, SHA-256 and where they come from.

Installed as the module ``nncompress_corpora`` (standard library only). The files themselves are
never part of this project: they are read from ../shared/corpora (or $NNCOMPRESS_SHARED/corpora)
and verified, and enwik8 is downloaded from its canonical address on request.

    >>> from nncompress_corpora import locate
    >>> locate("alice29.txt")          # Path to the verified file, or CorpusError
"""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

REGISTRY = Path(__file__).with_name("registry.tsv")
ENWIK8_URL = "http://mattmahoney.net/dc/enwik8.zip"

# Text files used for ratio reports (the binary members of the corpora are left out).
TEXT_FILES = (
    "alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt", "cp.html", "fields.c",
    "grammar.lsp", "xargs.1", "bib", "book1", "book2", "news", "paper1", "paper2", "paper3",
    "paper4", "paper5", "paper6", "progc", "progl", "progp", "trans", "bible.txt",
    "world192.txt", "enwik5", "enwik6",
)


class CorpusError(Exception):
    """A corpus file is unknown, absent, or does not match its registered size and SHA-256."""


@dataclass(frozen=True)
class Entry:
    set: str
    name: str
    bytes: int
    sha256: str
    source: str

    def relpath(self) -> Path:
        return Path(self.set) / self.name


def entries() -> dict[str, Entry]:
    with open(REGISTRY, newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return {r["name"]: Entry(r["set"], r["name"], int(r["bytes"]), r["sha256"],
                                 f"{r['source_repo']}@{r['commit']}:{r['path_in_repo']}")
                for r in rows}


def shared_dir() -> Path:
    env = os.environ.get("NNCOMPRESS_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, entry: Entry) -> Path:
    size = path.stat().st_size
    if size != entry.bytes:
        raise CorpusError(f"{path}: {size} bytes, expected {entry.bytes} for {entry.name}")
    if sha256_file(path) != entry.sha256:
        raise CorpusError(f"{path}: SHA-256 differs from the registered {entry.name}")
    return path


def locate(name: str, root: Optional[Path] = None) -> Path:
    """The verified path of a registered file under root (default ../shared/corpora)."""
    table = entries()
    if name not in table:
        raise CorpusError(f"unknown corpus file {name!r}")
    e = table[name]
    p = (root or shared_dir() / "corpora") / e.relpath()
    if not p.is_file():
        raise CorpusError(f"{p} not present")
    return verify(p, e)


def available_text_files(root: Optional[Path] = None) -> list[Path]:
    out = []
    for name in TEXT_FILES:
        try:
            out.append(locate(name, root))
        except CorpusError:
            pass
    return out


def download_enwik8(dest: Path, url: str = ENWIK8_URL,
                    progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Downloads enwik8.zip, unpacks enwik8 to `dest` and verifies it; nothing is left at
    `dest` unless it verifies. `progress(bytes_so_far, total_or_0)` is called after each MiB."""
    e = entries()["enwik8"]
    dest = Path(dest)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        zpath = Path(tmp) / "enwik8.zip"
        with urllib.request.urlopen(url, timeout=60) as r, open(zpath, "wb") as f:
            if progress is None:
                shutil.copyfileobj(r, f, 1 << 20)
            else:
                total, got = int(r.headers.get("Content-Length") or 0), 0
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    f.write(chunk)
                    got += len(chunk)
                    progress(got, total)
        with zipfile.ZipFile(zpath) as z:
            z.extract("enwik8", tmp)
        verify(Path(tmp) / "enwik8", e)
        os.replace(Path(tmp) / "enwik8", dest)
    return dest
