"""An S3-compatible cold tier (README, "An S3 cold tier"): `TSLAKE_COLD_PATH=s3://bucket/prefix`.

boto3 does the object work: an upload (multipart past `MULTIPART_THRESHOLD`, through boto3's
transfer manager), a read-back of the whole object (its size and SHA-256 against the hot
bytes) plus the Parquet row count read in place by DuckDB, deletes, and listings of one
partition's prefix at a time (never the whole bucket). Credentials and the endpoint come
from the standard variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`; path-style addressing when an endpoint
is set) and live only in memory: DuckDB gets them as a TEMPORARY secret, and no message
carries them (botocore's errors name the bucket and key, never the secret).

An object PUT is atomic (a reader sees all of it or nothing), so unlike the NAS there is no
`*.tmp` + rename: a killed copy leaves either no object or a whole one the manifest does not
list, which the next command deletes (runner/core/tiers.py records the dates first).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb

from runner.errors import ColdTierError, ColdTierUnavailableError, ConfigError
from runner.postgres.connection import sql_literal, wheel_extension_file

MULTIPART_THRESHOLD = 64 << 20  # bytes: bigger files go up in parts of this size
_CHUNK = 1 << 20
_SECRET = "tslake_cold"


def is_object_url(value: str) -> bool:
    return value.startswith("s3://")


def parse_url(value: str) -> tuple[str, str]:
    """`s3://bucket/prefix` -> (bucket, prefix without slashes at the ends). A URL with
    credentials in it is refused without repeating it (it would end up in logs)."""
    parts = urlsplit(value)
    if "@" in parts.netloc or parts.password or parts.username or parts.query:
        raise ConfigError("TSLAKE_COLD_PATH must be a plain s3://bucket/prefix URL without "
                          "credentials or query: put them in AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY")
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not bucket:
        raise ConfigError("TSLAKE_COLD_PATH=s3://… names no bucket: use s3://bucket/prefix")
    return bucket, prefix


@dataclass(frozen=True)
class Credentials:
    """The AWS_* variables, read when a tier is opened; never printed (no __repr__ of
    the secret: the dataclass repr is replaced)."""

    key_id: str | None
    secret: str | None
    token: str | None
    region: str
    endpoint: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        if endpoint and "@" in urlsplit(endpoint).netloc:
            raise ConfigError("AWS_ENDPOINT_URL must not carry credentials (user:password@): "
                              "put them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        return cls(key_id=env.get("AWS_ACCESS_KEY_ID") or None,
                   secret=env.get("AWS_SECRET_ACCESS_KEY") or None,
                   token=env.get("AWS_SESSION_TOKEN") or None,
                   region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
                   endpoint=endpoint)

    def __repr__(self) -> str:
        return f"Credentials(endpoint={self.endpoint!r}, region={self.region!r})"

    def redact(self, text: str) -> str:
        for value in (self.secret, self.token):
            if value:
                text = text.replace(value, "***")
        return text


class ObjectStore:
    """One bucket and prefix; `key(relative)` is `<prefix>/<relative>`."""

    def __init__(self, url: str, credentials: Credentials | None = None) -> None:
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_url(url)
        self.credentials = credentials or Credentials.from_env()
        self._client: Any = None
        self._duck: duckdb.DuckDBPyConnection | None = None

    # -- addresses -------------------------------------------------------------------------
    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def object_url(self, relative: str) -> str:
        return f"s3://{self.bucket}/{self.key(relative)}"

    def where(self) -> str:
        """The tier for messages: URL and endpoint, never a credential."""
        endpoint = f" at {self.credentials.endpoint}" if self.credentials.endpoint else ""
        return f"{self.url}{endpoint}"

    # -- the client ------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            creds = self.credentials
            config = Config(region_name=creds.region, connect_timeout=5, read_timeout=60,
                            retries={"max_attempts": 3, "mode": "standard"},
                            s3={"addressing_style": "path" if creds.endpoint else "auto"})
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=creds.endpoint, aws_access_key_id=creds.key_id,
                aws_secret_access_key=creds.secret, aws_session_token=creds.token,
                config=config)
        return self._client

    def _fail(self, doing: str, error: Exception, *, unavailable: bool) -> ColdTierError:
        reason = " ".join(self.credentials.redact(str(error)).split())
        kind = ColdTierUnavailableError if unavailable else ColdTierError
        return kind(f"cannot {doing} in the cold tier {self.where()}: {reason}; check the "
                    "endpoint, the bucket and the AWS_* credentials, then run `tslake "
                    "retention`")

    def _call(self, doing: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return function(*args, **kwargs)
        except ClientError as error:
            raise self._fail(doing, error, unavailable=False) from None
        except (BotoCoreError, OSError) as error:  # endpoint gone, DNS, timeouts
            raise self._fail(doing, error, unavailable=True) from None

    def check_reachable(self) -> None:
        self._call("reach the bucket", self.client.head_bucket, Bucket=self.bucket)

    # -- objects ---------------------------------------------------------------------------
    def copy_verified(self, source: Path, relative: str, rows: int) -> None:
        """Upload `source`, read the object back whole (size and SHA-256 must equal the hot
        file's) and count its Parquet rows in place (must equal `rows`)."""
        from boto3.s3.transfer import TransferConfig

        expected = file_sha256(source)
        size = source.stat().st_size
        key = self.key(relative)
        transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                  multipart_chunksize=MULTIPART_THRESHOLD, use_threads=False)
        self._call(f"copy {source.name}", self.client.upload_file, str(source), self.bucket,
                   key, Config=transfer)
        body = self._call(f"read back {relative}", self.client.get_object,
                          Bucket=self.bucket, Key=key)
        digest, got = hashlib.sha256(), 0
        stream = body["Body"]
        try:
            while chunk := self._call(f"read back {relative}", stream.read, _CHUNK):
                digest.update(chunk)
                got += len(chunk)
        finally:
            stream.close()
        if got != size or digest.hexdigest() != expected:
            raise ColdTierError(f"copy of {source.name} at {self.object_url(relative)} does not "
                                f"match the hot file ({got} of {size} bytes, SHA-256 "
                                f"{'equal' if digest.hexdigest() == expected else 'differs'}): "
                                "check the object store, then run `tslake retention`")
        found = self.parquet_rows(relative)
        if found != rows:
            raise ColdTierError(f"copy of {source.name} at {self.object_url(relative)} has "
                                f"{found} rows, the manifest says {rows}: check the object "
                                "store, then run `tslake retention`")

    def parquet_rows(self, relative: str) -> int:
        conn = self.duckdb()
        try:
            row = conn.execute("select sum(num_rows) from parquet_file_metadata(?)",
                               [self.object_url(relative)]).fetchone()
        except duckdb.Error as error:
            raise self._fail(f"read the footer of {relative}", error, unavailable=True) from None
        return int(row[0]) if row and row[0] is not None else 0

    def list_names(self, relative_prefix: str) -> Iterator[str]:
        """Relative names of the objects under one prefix (a partition: `date=D/`)."""
        paginator = self.client.get_paginator("list_objects_v2")
        start = self.key(relative_prefix)
        cut = len(self.prefix) + 1 if self.prefix else 0
        pages = self._call(f"list {relative_prefix}",
                           lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=start)))
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][cut:]

    def delete(self, relatives: list[str]) -> None:
        for first in range(0, len(relatives), 1000):  # DeleteObjects takes 1000 at a time
            batch = relatives[first:first + 1000]
            self._call("delete objects", self.client.delete_objects, Bucket=self.bucket,
                       Delete={"Objects": [{"Key": self.key(name)} for name in batch],
                               "Quiet": True})

    # -- DuckDB reading in place --------------------------------------------------------------
    def duckdb(self) -> duckdb.DuckDBPyConnection:
        if self._duck is None:
            conn = duckdb.connect()
            configure_duckdb(conn, self)
            self._duck = conn
        return self._duck

    def close(self) -> None:
        if self._duck is not None:
            self._duck.close()
            self._duck = None


def httpfs_extension_file() -> Path:
    """The extension binary shipped in the `duckdb-extension-httpfs` wheel."""
    import duckdb_extension_httpfs

    return wheel_extension_file(duckdb_extension_httpfs.__file__, "httpfs")


def configure_duckdb(conn: duckdb.DuckDBPyConnection, store: ObjectStore) -> None:
    """httpfs from its wheel, and a TEMPORARY secret (in memory only, never in a database
    file) scoped to the tier's bucket and prefix."""
    conn.execute(f"INSTALL {sql_literal(httpfs_extension_file())}")
    conn.execute("LOAD httpfs")
    creds = store.credentials
    options = ["TYPE s3", f"REGION {sql_literal(creds.region)}",
               f"SCOPE {sql_literal(f's3://{store.bucket}/{store.prefix}'.rstrip('/'))}"]
    if creds.key_id:
        options.append(f"KEY_ID {sql_literal(creds.key_id)}")
    if creds.secret:
        options.append(f"SECRET {sql_literal(creds.secret)}")
    if creds.token:
        options.append(f"SESSION_TOKEN {sql_literal(creds.token)}")
    if creds.endpoint:
        endpoint = urlsplit(creds.endpoint)
        use_ssl = "false" if endpoint.scheme == "http" else "true"
        options += [f"ENDPOINT {sql_literal(endpoint.netloc or endpoint.path)}",
                    "URL_STYLE 'path'", f"USE_SSL {use_ssl}"]
    try:
        conn.execute(f"CREATE OR REPLACE TEMPORARY SECRET {_SECRET} ({', '.join(options)})")
    except duckdb.Error as error:
        raise ConfigError(f"cannot set up DuckDB's S3 access for {store.where()}: "
                          f"{creds.redact(str(error)).splitlines()[0]}") from None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex (the read-back checks of both cold tiers)."""
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
