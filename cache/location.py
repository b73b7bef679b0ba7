"""Where a cache lives: a local path or an fsspec URL, opened as a Zarr store with one clear error per failure.

Storage options for object stores (an S3 endpoint, credentials, a profile) come from `OCZSS_STORAGE_OPTIONS`, a
JSON object handed to fsspec (e.g. `{"endpoint_url": "http://127.0.0.1:9000"}` for s3fs); botocore also honours
`AWS_ENDPOINT_URL`. A missing fsspec backend, an unknown protocol and an unreachable endpoint each end in one line
that says what to install or check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from zarr.storage import FsspecStore, LocalStore

from oczss.errors import OCZSSError

EXTRAS = {"s3": "s3fs (pip install 'oczss[s3]')", "gs": "gcsfs (pip install 'oczss[gcs]')",
          "gcs": "gcsfs (pip install 'oczss[gcs]')"}


def storage_options(url: str) -> dict:
    """fsspec options for `url` from OCZSS_STORAGE_OPTIONS (JSON object), {} for local paths."""
    raw = os.environ.get("OCZSS_STORAGE_OPTIONS", "").strip()
    if is_local(url) or not raw:
        return {}
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as e:
        raise OCZSSError(f"OCZSS_STORAGE_OPTIONS is not valid JSON ({e})") from None
    if not isinstance(options, dict):
        raise OCZSSError("OCZSS_STORAGE_OPTIONS must be a JSON object, e.g. {\"endpoint_url\": \"http://host:9000\"}")
    return options


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> Path:
    return Path(url[len("file://"):] if url.startswith("file://") else url)


def resolve(url: str) -> str:
    """An absolute local path for a relative one (what every dask worker must receive); URLs unchanged."""
    return str(local_path(url).resolve()) if is_local(url) else url


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for any cache URL, with the clear errors of this module."""
    import fsspec

    try:
        return fsspec.url_to_fs(url, **storage_options(url))
    except ImportError as e:
        protocol = url.split("://", 1)[0]
        need = EXTRAS.get(protocol, f"the fsspec backend for {protocol}://")
        raise OCZSSError(f"cache {url}: reading {protocol}:// needs {need} ({e})") from None
    except ValueError as e:
        if "Protocol not known" in str(e):
            raise OCZSSError(f"cache {url}: unknown storage protocol {url.split('://', 1)[0]!r}; use a local path or "
                             f"an fsspec URL such as s3://, gs://, memory://") from None
        raise OCZSSError(f"cache {url}: {e}") from None


def open_store(url: str, read_only: bool):
    """The Zarr store at `url` (LocalStore for paths, FsspecStore otherwise)."""
    if is_local(url):
        path = local_path(url)
        if read_only and not (path / "zarr.json").exists():
            raise OCZSSError(f"no mask cache at {url}: run `oczss precompute --cache {url} ...` first")
        return LocalStore(path, read_only=read_only)
    filesystem(url)  # the clear errors for a missing backend or an unknown protocol
    try:
        return FsspecStore.from_url(url, storage_options=storage_options(url), read_only=read_only)
    except Exception as e:  # noqa: BLE001 - a backend's own error becomes one line naming the URL
        raise OCZSSError(f"cache {url}: cannot open the store ({type(e).__name__}: {str(e)[:200]})") from None


def unreachable(url: str, error: Exception) -> OCZSSError:
    """The one-line error for a store that cannot be reached (network, endpoint, credentials)."""
    hint = ("check the endpoint (OCZSS_STORAGE_OPTIONS or AWS_ENDPOINT_URL), the network and the credentials"
            if not is_local(url) else "check the path and its permissions")
    return OCZSSError(f"cache {url}: the store cannot be reached ({type(error).__name__}: {str(error)[:160]}); {hint}")
