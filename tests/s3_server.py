"""A real S3 API on 127.0.0.1 for tests: ``moto``'s server mode (a dev dependency).

:class:`S3Server` starts ``python -m moto.server`` on a free loopback port and creates a
bucket; :meth:`S3Server.uri` names a run directory in it with the endpoint in the URI's
query (``endpoint_override``, ``scheme``), as a user of a self-hosted S3 (MinIO, Ceph)
would write it. Credentials are dummy values from the environment (:data:`CREDENTIALS`,
set by ``conftest`` before the session's Ray starts, so every Ray worker sees them).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

#: what every process (the test, Ray workers, cluster nodes) needs to sign S3 requests
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance metadata service
}


class S3Server:
    """``moto.server`` on 127.0.0.1 with one bucket; :meth:`close` stops it."""

    def __init__(self, bucket: str = "nasforge-tests") -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.bucket = bucket
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        self.client().create_bucket(Bucket=bucket)

    @property
    def endpoint(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        """A boto3 S3 client on this server (for looking at what a run wrote)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def uri(self, name: str | None = None) -> str:
        """``s3://BUCKET/NAME?endpoint_override=…&scheme=http`` (a fresh name by default)."""
        name = name or f"run-{uuid.uuid4().hex[:8]}"
        return (
            f"s3://{self.bucket}/{name}?endpoint_override=127.0.0.1:{self.port}"
            "&scheme=http&region=us-east-1"
        )

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix``, relative to it (not the empty folder markers
        pyarrow creates)."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/")
        )
        return sorted(
            o["Key"][len(prefix.rstrip("/")) + 1 :]
            for page in pages
            for o in page.get("Contents", [])
            if not o["Key"].endswith("/")
        )

    def read(self, key: str) -> bytes:
        """The bytes of object ``key`` in the bucket."""
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def close(self) -> None:
        """Stop the server (the process this object started, nothing else)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
