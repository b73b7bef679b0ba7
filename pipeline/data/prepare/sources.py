"""The publishers' downloads as read-only file trees: an extracted folder, a zip, or a tar (plain or gzip), read in
place without extracting.

A tree names its files by their path inside the download (`train2017/000000000139.png`,
`VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg`), the same whichever form it has. `refs(names)` hands out small
picklable references that a worker process opens itself: a file path, a zip member, the byte range of a member in
a plain tar. A gzip tar cannot be read at random, so its members are streamed in archive order and handed out as
bytes; its small `.txt` members (split lists) are kept from the listing pass for `read`.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from oczss.errors import OCZSSError


@dataclass(frozen=True)
class FileRef:
    path: str

    def read(self) -> bytes:
        return Path(self.path).read_bytes()


@dataclass(frozen=True)
class ZipRef:
    archive: str
    member: str

    def read(self) -> bytes:
        return _zip(self.archive).read(self.member)


@dataclass(frozen=True)
class TarRef:
    archive: str
    offset: int
    size: int

    def read(self) -> bytes:
        with open(self.archive, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)


@dataclass(frozen=True)
class DataRef:
    data: bytes

    def read(self) -> bytes:
        return self.data


_ZIPS: dict[tuple[int, str], zipfile.ZipFile] = {}


def _zip(path: str) -> zipfile.ZipFile:
    """One open ZipFile per (process, archive): reading the central directory of a 118k-member zip takes a while."""
    key = (os.getpid(), path)
    if key not in _ZIPS:
        _ZIPS[key] = zipfile.ZipFile(path)
    return _ZIPS[key]


class Tree:
    """Files of one download. `label`: where it lies, for messages."""

    label: str

    def files(self, prefix: str) -> list[str]:
        """Sorted names of every file under the folder `prefix` (recursively)."""
        raise NotImplementedError

    def has(self, name: str) -> bool:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        """One (small) file's bytes."""
        raise NotImplementedError

    def refs(self, names: Iterable[str]) -> Iterator[tuple[str, object]]:
        """(name, ref) for each name, in the order the tree reads fastest."""
        raise NotImplementedError

    def where(self, name: str) -> str:
        return f"{self.label}:{name}"


class FolderTree(Tree):
    def __init__(self, root: Path):
        self.root, self.label = root, str(root)

    def files(self, prefix: str) -> list[str]:
        top = self.root / prefix
        out = []
        for folder, _, names in os.walk(top):
            rel = Path(folder).relative_to(self.root).as_posix()
            out.extend(f"{rel}/{n}" for n in names)
        return sorted(out)

    def has(self, name: str) -> bool:
        return (self.root / name).is_file()

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def refs(self, names):
        return ((n, FileRef(str(self.root / n))) for n in names)

    def where(self, name: str) -> str:
        return str(self.root / name)


class _ArchiveTree(Tree):
    """Shared by zip and tar: a name list, with leading folders stripped when the archive wraps `marker` (a folder
    path such as `VOCdevkit/VOC2012`) in them."""

    def __init__(self, path: Path, marker: str, names: list[str]):
        self.path, self.label = path, str(path)
        m = marker + "/"
        bases = {"" if n.startswith(m) else n[: n.index("/" + m) + 1] for n in names if n.startswith(m) or "/" + m in n}
        self.base = min(bases, key=len, default="")
        self.names = {n[len(self.base):]: n for n in names if n.startswith(self.base)}

    def files(self, prefix: str) -> list[str]:
        prefix = prefix.rstrip("/") + "/"
        return sorted(n for n in self.names if n.startswith(prefix))

    def has(self, name: str) -> bool:
        return name in self.names

    def where(self, name: str) -> str:
        return f"{self.label}:{self.names.get(name, self.base + name)}"


class ZipTree(_ArchiveTree):
    def __init__(self, path: Path, marker: str):
        super().__init__(path, marker, [n for n in _zip(str(path)).namelist() if not n.endswith("/")])

    def read(self, name: str) -> bytes:
        return _zip(str(self.path)).read(self.names[name])

    def refs(self, names):
        return ((n, ZipRef(str(self.path), self.names[n])) for n in names)


class TarTree(_ArchiveTree):
    def __init__(self, path: Path, marker: str):
        self.offsets: dict[str, tuple[int, int]] = {}
        self.kept: dict[str, bytes] = {}
        with open(path, "rb") as f:
            self.compressed = f.read(6).startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ"))  # gzip, bzip2, xz magic
        with tarfile.open(path) as tar:
            for m in tar:
                if m.isfile():
                    self.offsets[m.name] = (m.offset_data, m.size)
                    if m.name.endswith(".txt") and m.size < 1 << 20:
                        self.kept[m.name] = tar.extractfile(m).read()
        super().__init__(path, marker, list(self.offsets))

    def read(self, name: str) -> bytes:
        member = self.names[name]
        if member in self.kept:
            return self.kept[member]
        if self.compressed:
            raise OCZSSError(f"{self.where(name)}: cannot be read at random from a compressed tar")
        return TarRef(str(self.path), *self.offsets[member]).read()

    def refs(self, names):
        wanted = {self.names[n]: n for n in names}
        if not self.compressed:
            return ((wanted[m], TarRef(str(self.path), *self.offsets[m])) for m in wanted)
        return self._stream(wanted)

    def _stream(self, wanted: dict[str, str]):
        with tarfile.open(self.path) as tar:
            for m in tar:
                if m.name in wanted:
                    yield wanted[m.name], DataRef(tar.extractfile(m).read())


def locate(raw: Path, what: str, folders: str | tuple[str, ...], marker: str, archives: tuple[str, ...],
           suffix: str = "") -> Tree:
    """The download `what` in `raw`: the extracted `raw/folder` for the first of `folders` ("" = `raw` itself) where
    `raw/folder/marker` is a folder holding a file ending in `suffix` (two downloads may extract into one folder),
    else the first of `archives` found in `raw` (members under `marker/`). Raises OCZSSError naming every place it
    looked."""
    folders = (folders,) if isinstance(folders, str) else folders
    for folder in folders:
        top = raw / folder / marker
        if top.is_dir() and (not suffix or any(e.name.endswith(suffix) for e in os.scandir(top))):
            return FolderTree(raw / folder)
    for name in archives:
        path = raw / name
        if path.is_file():
            try:
                tree = ZipTree(path, marker) if zipfile.is_zipfile(path) else TarTree(path, marker)
            except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
                raise OCZSSError(f"{what}: {path} cannot be read as an archive ({e})") from None
            if not tree.files(marker):
                raise OCZSSError(f"{what}: {path} holds no {marker}/ folder; is it the right download?")
            return tree
    looked = " or ".join(str(raw / folder / marker) for folder in folders) + (f" (holding *{suffix})" if suffix else "")
    raise OCZSSError(f"{what}: not found; looked for the folder {looked} and for "
                     + " or ".join(str(raw / a) for a in archives))


def require(tree: Tree, names: Iterable[str], what: str) -> None:
    """Raise OCZSSError naming the files of `names` that `tree` lacks (the first 10, and how many in all)."""
    missing = [n for n in names if not tree.has(n)]
    if missing:
        shown = ", ".join(tree.where(n) for n in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise OCZSSError(f"{what}: {len(missing)} expected file(s) missing: {shown}{more}")
