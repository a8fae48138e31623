"""Run gpubox's real entry playbooks against moto server on 127.0.0.1 and inspect the result with boto3.

The playbooks reach moto through a recording proxy (support/aws_proxy.py): every AWS call they make must be
allowed by docs/iam-policy.json, or the test that made it fails. The proxy also answers a repeated EC2
ClientToken as EC2 does, which moto does not.
"""

import pytest

from support import iam
from support.gpubox import Aws, Gpubox, reset_moto


@pytest.fixture
def aws(moto_url, proxy):
    reset_moto(moto_url)
    proxy.clear()
    return Aws(moto_url)


@pytest.fixture
def gpubox(proxy, aws, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    yield Gpubox(proxy.url, home)
    refused = iam.refused(proxy.calls)
    assert not refused, f"the playbooks called AWS actions that docs/iam-policy.json does not allow: {refused}"
