"""The AWS proxy of the tests (tests/support/aws_proxy.py): boto3 through it to a real moto server on 127.0.0.1."""

import http.client
import threading
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError

from standin import MOTO_UBUNTU_AMI
from support.gpubox import reset_moto

REGION = "us-east-1"


@pytest.fixture
def proxy(moto_url, proxy):
    """The session's proxy, on a reset moto, with nothing recorded yet."""
    reset_moto(moto_url)
    proxy.clear()
    return proxy


def client(service, url, region=REGION):
    return boto3.client(service, endpoint_url=url, region_name=region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def run_instance(url, token, itype="g5.xlarge", region=REGION):
    reply = client("ec2", url, region).run_instances(ImageId=MOTO_UBUNTU_AMI, InstanceType=itype, MinCount=1,
                                                     MaxCount=1, ClientToken=token)
    return reply["Instances"][0]["InstanceId"]


def instance_ids(url, region=REGION):
    reservations = client("ec2", url, region).describe_instances()["Reservations"]
    return [i["InstanceId"] for r in reservations for i in r["Instances"]]


def test_calls_are_recorded_with_service_and_action(proxy):
    client("ec2", proxy.url).describe_instances()
    client("sts", proxy.url).get_caller_identity()
    client("ssm", proxy.url).get_parameters(Names=["/gpubox/none"])
    with pytest.raises(ClientError) as raised:
        client("service-quotas", proxy.url).get_service_quota(ServiceCode="ec2", QuotaCode="L-DB2E81BA")
    assert raised.value.response["Error"]["Code"] == "NoSuchResourceException"
    assert proxy.calls == [("ec2", "DescribeInstances"), ("sts", "GetCallerIdentity"), ("ssm", "GetParameters"),
                           ("servicequotas", "GetServiceQuota")]


def test_a_repeated_run_instances_is_answered_once(proxy, moto_url):
    first = run_instance(proxy.url, "token-1")
    assert run_instance(proxy.url, "token-1") == first
    assert instance_ids(moto_url) == [first]
    assert proxy.idempotent_replays == 1
    assert proxy.calls == [("ec2", "RunInstances")] * 2


def test_the_same_token_with_other_parameters_is_a_mismatch(proxy, moto_url):
    first = run_instance(proxy.url, "token-1")
    with pytest.raises(ClientError) as raised:
        run_instance(proxy.url, "token-1", itype="g5.2xlarge")
    assert raised.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert instance_ids(moto_url) == [first]


def test_the_same_token_in_another_region_is_another_request(proxy, moto_url):
    east = run_instance(proxy.url, "token-1")
    west = run_instance(proxy.url, "token-1", itype="g5.2xlarge", region="us-west-2")
    assert instance_ids(moto_url) == [east]
    assert instance_ids(moto_url, "us-west-2") == [west]


def test_concurrent_requests_with_one_token_launch_one_instance(proxy, moto_url):
    start = threading.Barrier(2)
    ids = []

    def launch():
        start.wait()
        ids.append(run_instance(proxy.url, "token-1"))

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 2 and ids[0] == ids[1]
    assert instance_ids(moto_url) == ids[:1]
    assert proxy.idempotent_replays == 1


def test_a_repeated_create_volume_creates_one_volume(proxy, moto_url):
    ec2 = client("ec2", proxy.url)
    ids = {ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, ClientToken="volume-1")["VolumeId"]
           for _ in range(2)}
    assert [v["VolumeId"] for v in client("ec2", moto_url).describe_volumes()["Volumes"]] == list(ids)


def test_moto_api_is_forwarded_and_not_recorded(proxy, moto_url):
    run_instance(moto_url, "token-1")
    reset = urllib.request.urlopen(urllib.request.Request(proxy.url + "/moto-api/reset", method="POST"), timeout=10)
    assert reset.status == 200
    assert instance_ids(moto_url) == []
    assert proxy.calls == []


def test_a_chunked_request_body_is_forwarded_whole(proxy):
    # botocore sends Content-Length for these services; the proxy takes a chunked body too. moto does not check
    # signatures: a credential scope is all it needs to route the call.
    conn = http.client.HTTPConnection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]), timeout=10)
    body = [b"Action=DescribeRegions", b"&Version=2016-11-15"]
    conn.request("POST", "/", body=iter(body), encode_chunked=True, headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261201/us-east-1/ec2/aws4_request, "
                         "SignedHeaders=host, Signature=0"})
    response = conn.getresponse()
    assert response.status == 200
    assert b"<regionName>us-east-1</regionName>" in response.read()
    conn.close()
    assert proxy.calls == [("ec2", "DescribeRegions")]


def test_held_requests_wait_for_one_another(proxy, moto_url):
    # Two launches with their own tokens (as without gpubox's derived token): both must reach moto.
    proxy.hold("RunInstances", 2, timeout=20)
    first = threading.Thread(target=run_instance, args=(proxy.url, "token-a"))
    first.start()
    first.join(1)
    assert first.is_alive(), "the first request was answered before the second arrived"
    run_instance(proxy.url, "token-b")
    first.join(20)
    assert len(instance_ids(moto_url)) == 2
    # Held once: the next request goes straight through.
    run_instance(proxy.url, "token-c")
