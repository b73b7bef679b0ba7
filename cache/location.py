"""Where a cache lives: a local path or an fsspec URL, opened as a Zarr store with one clear error per failure.

Storage options for object stores (an S3 endpoint, credentials, a profile) come from `OCZSS_STORAGE_OPTIONS`, a
JSON object handed to fsspec (e.g. `{"endpoint_url": "http://127.0.0.1:9000"}` for s3fs); botocore also honours
`AWS_ENDPOINT_URL`. A missing fsspec backend, an unknown protocol, an unreachable endpoint, missing credentials and
an operating-system error (a read-only folder, a full disk) each end in one line that says what to install or check:
`reaching(url)` turns the errors of a store's own layers (the OS, botocore, aiohttp, google-auth, ...) into it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from zarr.storage import FsspecStore, LocalStore

from oczss.errors import OCZSSError, os_error

# Exceptions of these top-level modules are errors of oczss's own stack (a bug shows its traceback); an OSError, a
# timeout or any other library's exception raised by a store's operations (botocore's EndpointConnectionError and
# NoCredentialsError, aiohttp's, google-auth's, ...) means the store cannot be reached or refuses us.
OWN_STACK = ("builtins", "oczss", "zarr", "numpy", "numcodecs", "dask")
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
    fs, path = filesystem(url)  # the clear errors for a missing backend or an unknown protocol
    with reaching(url):
        exists = fs.exists(f"{path.rstrip('/')}/zarr.json")  # one request: a dead endpoint fails here, plainly
    if read_only and not exists:
        raise OCZSSError(f"no mask cache at {url}: run `oczss precompute --cache {url} ...` first")
    try:
        return FsspecStore.from_url(url, storage_options=storage_options(url), read_only=read_only)
    except Exception as e:  # noqa: BLE001 - a backend's own error becomes one line naming the URL
        raise OCZSSError(f"cache {url}: cannot open the store ({type(e).__name__}: {str(e)[:200]})") from None


def is_backend_error(error: BaseException) -> bool:
    """Whether `error`, raised by a store's operations, comes from the operating system or the store's network /
    authentication layers (not from oczss's own stack)."""
    return isinstance(error, (OSError, TimeoutError)) or type(error).__module__.split(".")[0] not in OWN_STACK


@contextlib.contextmanager
def reaching(url: str):
    """Turn the store errors raised inside into the one-line error of `unreachable`; other errors pass."""
    try:
        yield
    except OCZSSError:
        raise
    except Exception as e:
        if is_backend_error(e):
            raise unreachable(url, e) from None
        raise


def unreachable(url: str, error: Exception) -> OCZSSError:
    """The one-line error for a store that cannot be used: an OS error on a local path (naming the path and what
    the errno means), or an endpoint that cannot be reached or refuses the credentials."""
    if is_local(url) and isinstance(error, OSError):
        return OCZSSError(f"cache {url}: {os_error(error, url)}")
    what = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
    if "credential" in what.lower():
        return OCZSSError(f"cache {url}: no credentials for the store ({what}); give them as the backend expects "
                          f"(for S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or \"key\" / \"secret\" "
                          f"or \"anon\": true in OCZSS_STORAGE_OPTIONS)")
    hint = ("check the endpoint (OCZSS_STORAGE_OPTIONS or AWS_ENDPOINT_URL), the network and the credentials"
            if not is_local(url) else "check the path and its permissions")
    return OCZSSError(f"cache {url}: the store cannot be reached ({what}); {hint}")
