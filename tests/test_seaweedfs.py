"""The test S3 server (``scripts/seaweedfs.py``) and the repository's port picker
(``scripts/ports.py``): ports with free gRPC twins, many buckets each writable, a clean stop."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest
from ports import GRPC_TWIN_OFFSET, bindable, free_port
from seaweedfs import SeaweedFS, s3_client


def test_free_port_with_a_twin_leaves_both_free_and_avoids_what_it_is_told():
    taken: set[int] = set()
    for _ in range(20):
        port = free_port(twin_offset=GRPC_TWIN_OFFSET, avoid=frozenset(taken))
        twin = port + GRPC_TWIN_OFFSET
        assert twin <= 65535 and port not in taken and twin not in taken
        assert bindable(port) and bindable(twin)
        taken |= {port, twin}


def test_every_new_bucket_is_writable(s3_endpoint):
    """weed's defaults (8 volumes, 7 more per new bucket) leave the second bucket nowhere to
    write; the starter's settings must not."""
    client = s3_client(s3_endpoint)
    buckets = [f"many-{i}-{uuid.uuid4().hex[:8]}" for i in range(12)]
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="a/b.txt", Body=bucket.encode())
    for bucket in buckets:
        assert client.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == bucket.encode()


def test_a_server_stops_with_its_process_its_folder_and_its_sockets():
    server = SeaweedFS(stop_grace=1)
    server.start()
    pid, folder, ports = server.pid, server.data_dir, dict(server.ports)
    assert len(set(ports.values())) == 4 and all(p + GRPC_TWIN_OFFSET <= 65535 for p in ports.values())
    server.create_bucket("stop-check")
    server.s3.put_object(Bucket="stop-check", Key="k", Body=b"v")
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not folder.exists()
    left = [
        p.name
        for port in ports.values()
        for p in Path(tempfile.gettempdir()).glob("seaweedfs-*.sock")
        if p.name.endswith((f"-{port}.sock", f"-{port + GRPC_TWIN_OFFSET}.sock"))
    ]
    assert left == []
    server.stop()  # twice is harmless
