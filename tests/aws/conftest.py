"""Run gpubox's real entry playbooks against moto server on 127.0.0.1 and inspect the result with boto3."""

import pytest

from support.gpubox import (  # noqa: F401 (re-exported for the test modules)
    ARM_AMI, MY_CIDR, REGION, REPO, UBUNTU_AMI, Aws, Gpubox, Result, free_port as _free_port, moto_server, reset_moto,
)


@pytest.fixture(scope="session")
def moto_url():
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url):
    reset_moto(moto_url)
    return Aws(moto_url)


@pytest.fixture
def gpubox(moto_url, aws, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return Gpubox(moto_url, home)
