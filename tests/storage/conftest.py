"""The storage service process for every backend, shared by the contract and tenancy suites."""

from __future__ import annotations

import pytest

from echo.v1 import storage_pb2_grpc
from tests.aws.storage_standin import aws_stand_in, seaweedfs_stand_in
from tests.servicetools import grpc_channel, start_grpc_service

# "aws": DynamoDB and S3 on moto; "aws-seaweedfs": the same backend with S3 on SeaweedFS, whose S3
# checks signatures and encrypts at rest as S3 does; "fake": in memory, for deterministic tests.
BACKENDS = ["local", "aws", "aws-seaweedfs", "fake"]


@pytest.fixture(scope="module", params=BACKENDS)
def storage(request, log_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"storage-{request.param}")
    env = {"ECHO_STORAGE_SERVICE": request.param.split("-")[0], "ECHO_DATA_DIR": str(data_dir)}
    stand_in = None
    if request.param == "aws":
        stand_in, aws_env = aws_stand_in(log_dir)
        env |= aws_env
    elif request.param == "aws-seaweedfs":
        stand_in, aws_env = seaweedfs_stand_in(log_dir, data_dir / "seaweedfs")
        env |= aws_env
    proc, address = start_grpc_service("storage", env, log_dir)
    state = {"address": address, "env": env, "proc": proc, "data_dir": data_dir, "backend": request.param}
    yield state
    state["proc"].stop()  # the restart test swaps in a new process
    if stand_in is not None:
        stand_in.stop()


@pytest.fixture()
async def stub(storage):
    async with grpc_channel(storage["address"]) as channel:
        yield storage_pb2_grpc.StorageStub(channel)
