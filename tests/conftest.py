"""Fixtures shared by the suites that talk to the AWS stand-in (tests/aws, and the proxy's own unit test)."""

import pytest

from support.aws_proxy import aws_proxy
from support.gpubox import moto_server


@pytest.fixture(scope="session")
def moto_url():
    """moto server on a free port of 127.0.0.1, for the whole session."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def proxy(moto_url):
    """The recording proxy in front of it (support/aws_proxy.py)."""
    with aws_proxy(moto_url) as started:
        yield started
