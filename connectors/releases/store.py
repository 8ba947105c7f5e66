"""Model artifact stores: the trainer's (a directory or an S3 bucket) and fetching from one.

    LocalStore("var/models")           <root>/<version>/        releases carry file:///…/<version>
    S3Store("s3://bucket/prefix", …)   prefix/<version>/<file>  releases carry s3://bucket/prefix/<version>/

An S3 artifact is exported to a local staging directory first, then uploaded file by file with
``metadata.json`` last: a reader that finds the metadata finds every file it lists, and a version
without metadata is no version (an upload that died half-way is invisible). Fetching is complete
or nothing, as for directories: download into a temporary directory beside ``dest``, then rename.
Hashes are not checked here; whoever loads the artifact (``model.artifact.load_artifact``) does.

Credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
AWS_PROFILE, ~/.aws, an instance role); endpoint and region are passed in as ``S3Options``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from model.artifact import METADATA  # uploaded last
from streamrec.errors import ClusterUnreachable, StreamrecError

# boto3 is imported where an S3 store is used: the private side's file:// stores never load it.


class StoreError(StreamrecError):
    """An artifact cannot be stored, found or fetched; the message says what to do."""


class StoreUnavailable(StoreError, ClusterUnreachable):
    """The store itself cannot be used (unreachable, credentials refused, no bucket): a setting
    to fix on this side, not a fault of the artifact."""


@dataclass(frozen=True)
class S3Options:
    """How to reach the S3 service of s3:// URIs (credentials come from the AWS chain)."""

    endpoint_url: str | None = None  # an S3-compatible service (MinIO); None: AWS S3
    region: str | None = None  # None: the AWS chain's region


def artifact_uri(path: Path) -> str:
    """The ``file://`` URI of an artifact directory, as releases carry it."""
    return path.resolve().as_uri()


def uri_path(uri: str) -> Path:
    """The local directory a ``file://`` URI names; StoreError for other schemes."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise StoreError(f"artifact URI {uri!r}: only file:// URIs (a shared or mounted "
                         "directory) are supported")
    return Path(unquote(parsed.path))


def fetch_artifact(uri: str, dest: Path, s3: S3Options | None = None) -> Path:
    """Copy the artifact at ``uri`` to ``dest`` (complete or not at all) and return ``dest``.

    ``file://`` URIs are copied, ``s3://`` URIs downloaded with the ``s3`` options (endpoint,
    region; credentials from the AWS chain).
    """
    scheme = urlparse(uri).scheme
    if scheme == "s3":
        return fetch_s3(uri, dest, s3 or S3Options())
    if scheme != "file":
        raise StoreError(f"artifact URI {uri!r}: only file:// (a shared or mounted directory) "
                         "and s3:// (an S3-compatible object store) URIs are supported")
    source = uri_path(uri)
    if not source.is_dir():
        raise StoreError(f"artifact {uri} is not there (no directory {source}); is the model "
                         "store mounted on this side?")
    with replaced_atomically(dest) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    return dest


@contextmanager
def replaced_atomically(dest: Path) -> Iterator[Path]:
    """A new directory beside ``dest`` to fill; it becomes ``dest`` when the block succeeds and
    is removed when it fails, so ``dest`` is never half-written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; workers of another user may read it
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
            "InvalidToken", "403", "Forbidden"}
_WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301"}


def s3_client(options: S3Options) -> Any:
    """A boto3 S3 client for ``options``: short connect timeout, a few retries."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"},
                    # MinIO and most S3-compatible services serve buckets as paths, not hosts.
                    s3={"addressing_style": "path"} if options.endpoint_url else None)
    return boto3.session.Session().client("s3", endpoint_url=options.endpoint_url,
                                          region_name=options.region, config=config)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Bucket and key prefix ('' or ending in '/') of ``s3://bucket/prefix``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(f"{uri!r} is not an s3://BUCKET/PREFIX URI")
    prefix = parsed.path.strip("/")
    return parsed.netloc, f"{prefix}/" if prefix else ""


class LocalStore:
    """Artifacts in a directory: ``<root>/<version>/``, named by ``file://`` URIs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        """The store as the user named it."""
        return str(self.root)

    def check(self) -> None:
        """Nothing to check: the directory is made with its first artifact."""

    def staging(self, version: str) -> Path:
        """Where to export ``version``: in place, so ``put`` has nothing to copy."""
        return self.root / _checked_version(version)

    def put(self, local: Path, version: str) -> str:
        """Store the artifact directory ``local`` as ``version``; its URI."""
        target = self.staging(version)
        if local.resolve() != target.resolve():
            fetch_artifact(artifact_uri(local), target)
        return artifact_uri(target)

    def local_path(self, uri: str, version: str) -> Path:
        """A local directory holding the artifact at ``uri`` (the directory it names)."""
        return uri_path(uri)

    def discard_local(self, path: Path) -> None:
        """Nothing: the directory is the store, every artifact in it stays."""

    def iter_json(self) -> Iterator[tuple[str, bytes]]:
        """(path, content) of every ``*.json`` file in the store."""
        if self.root.is_dir():
            for path in sorted(self.root.rglob("*.json")):
                yield str(path), path.read_bytes()


class S3Store:
    """Artifacts in a bucket, ``s3://bucket/prefix/<version>/``, exported first to ``staging``."""

    def __init__(self, location: str, staging: Path, client: Any,
                 endpoint_url: str | None = None) -> None:
        self.bucket, self.prefix = parse_s3_uri(location)
        self.staging_root = Path(staging)
        self.client = client
        self.service = endpoint_url or "AWS S3"
        self._local: set[Path] = set()  # staged or fetched copies this store made

    @property
    def location(self) -> str:
        """The store as an ``s3://`` URI."""
        return f"s3://{self.bucket}/{self.prefix}"

    def check(self) -> None:
        """Fail now, saying what to do, when the bucket cannot be listed (missing, credentials
        refused, service unreachable), rather than after a window was trained."""
        with self._errors("list", self.location):
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)

    def staging(self, version: str) -> Path:
        """The local directory to export ``version`` into before ``put``."""
        path = self.staging_root / _checked_version(version)
        self._local.add(path)
        return path

    def put(self, local: Path, version: str) -> str:
        """Upload the artifact directory ``local`` as ``version``, metadata.json last; its URI."""
        files = sorted(p for p in local.rglob("*") if p.is_file())
        meta = local / METADATA
        if meta not in files:
            raise StoreError(f"{local} is not a model artifact (no {METADATA})")
        prefix = f"{self.prefix}{_checked_version(version)}/"
        for path in [*(p for p in files if p != meta), meta]:
            key = prefix + path.relative_to(local).as_posix()
            with self._errors("upload to", f"s3://{self.bucket}/{key}"):
                self.client.upload_file(str(path), self.bucket, key)
        return f"s3://{self.bucket}/{prefix}"

    def fetch(self, uri: str, dest: Path) -> Path:
        """Download the artifact at ``uri`` to ``dest`` (complete or not at all); ``dest``."""
        bucket, prefix = parse_s3_uri(uri)
        with self._errors("list", uri):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                          Prefix=prefix)
            keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        names = {key[len(prefix):]: key for key in keys if not key.endswith("/")}
        if METADATA not in names:
            raise StoreError(f"artifact {uri} is not there (no {prefix}{METADATA} in bucket "
                             f"{bucket} on {self.service}): was it released to this store, and "
                             "is this the store's endpoint (STREAMREC_S3_ENDPOINT_URL)?")
        unsafe = sorted(n for n in names if not _is_plain_relative(n))
        if unsafe:
            raise StoreError(f"artifact {uri} holds object names that leave its directory "
                             f"({unsafe[:3]}): refusing to fetch it")
        with replaced_atomically(dest) as tmp:
            for name, key in sorted(names.items()):
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                with self._errors("download", f"s3://{bucket}/{key}"):
                    self.client.download_file(bucket, key, str(tmp / name))
        return dest

    def local_path(self, uri: str, version: str) -> Path:
        """A local directory holding the artifact at ``uri``: s3:// is downloaded to staging."""
        if urlparse(uri).scheme != "s3":
            return uri_path(uri)
        return self.fetch(uri, self.staging(version))

    def discard_local(self, path: Path) -> None:
        """Remove a staged or fetched copy this store made (the bucket holds the artifact)."""
        if path in self._local:
            self._local.discard(path)
            shutil.rmtree(path, ignore_errors=True)

    def iter_json(self) -> Iterator[tuple[str, bytes]]:
        """(s3 URI, content) of every object ending in ``.json`` under the prefix."""
        with self._errors("list", self.location):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self.prefix)
            keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        for key in sorted(k for k in keys if k.endswith(".json")):
            uri = f"s3://{self.bucket}/{key}"
            with self._errors("read", uri):
                data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            yield uri, data

    @contextmanager
    def _errors(self, action: str, where: str) -> Iterator[None]:
        """Turn boto3's errors into StoreError that says what to do."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except S3UploadFailedError as exc:
            # boto3 wraps the ClientError of an upload; the original carries the error code.
            cause = exc.__context__
            raise self._store_error(cause if isinstance(cause, ClientError) else exc, action,
                                    where) from None
        except (ClientError, BotoCoreError) as exc:
            raise self._store_error(exc, action, where) from None

    def _store_error(self, exc: Exception, action: str, where: str) -> StoreError:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StoreUnavailable(
                f"cannot {action} {where}: no S3 credentials found; set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for {self.service}")
        if isinstance(exc, ConnectionError | HTTPClientError):
            return StoreUnavailable(
                f"cannot {action} {where}: {self.service} is not reachable ({exc}); is it "
                "running, and is STREAMREC_S3_ENDPOINT_URL right?")
        if not isinstance(exc, ClientError):
            return StoreError(f"cannot {action} {where} on {self.service}: {exc}")
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "?")), error.get("Message", "")
        if code == "NoSuchBucket":
            return StoreUnavailable(
                f"cannot {action} {where}: bucket {error.get('BucketName', '') or 'named'} does "
                f"not exist on {self.service}; create it (`aws s3 mb`, `mc mb`) or fix "
                "STREAMREC_MODEL_STORE / STREAMREC_S3_ENDPOINT_URL")
        if code in _REFUSED:
            return StoreUnavailable(
                f"cannot {action} {where}: {self.service} refused the credentials ({code}: "
                f"{message}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) "
                "and that they may list, read and write the bucket")
        if code in _WRONG_REGION:
            return StoreUnavailable(
                f"cannot {action} {where}: the bucket is in another region ({code}); set "
                "STREAMREC_S3_REGION to the bucket's region")
        return StoreError(f"cannot {action} {where} on {self.service}: {code}: {message}")


ArtifactStore = LocalStore | S3Store


def open_store(location: str, staging: Path, s3: S3Options) -> ArtifactStore:
    """The store at ``location``: a directory, or ``s3://bucket/prefix`` (staged in ``staging``)."""
    if location.startswith("s3://"):
        return S3Store(location, staging, s3_client(s3), s3.endpoint_url)
    return LocalStore(Path(location))


def fetch_s3(uri: str, dest: Path, s3: S3Options) -> Path:
    """Download the artifact at an ``s3://`` URI to ``dest`` (complete or not at all)."""
    bucket, _ = parse_s3_uri(uri)
    return S3Store(f"s3://{bucket}", dest.parent, s3_client(s3), s3.endpoint_url).fetch(uri, dest)


def _checked_version(version: str) -> str:
    if not version or "/" in version or version.startswith("."):
        raise StoreError(f"{version!r} is not a usable model version name")
    return version


def _is_plain_relative(name: str) -> bool:
    """Whether an object name stays inside the artifact directory (no '', '.' or '..' part)."""
    return all(part not in ("", ".", "..") for part in name.split("/"))
