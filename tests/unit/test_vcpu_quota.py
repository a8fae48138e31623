"""The vCPU quota decision, with AWS answers stubbed by botocore's Stubber (the emulator has no EC2 quotas)."""

import importlib.util
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "ec2_vcpu_quota", REPO / "collections/ansible_collections/gpubox/box/plugins/modules/ec2_vcpu_quota.py")
quota_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quota_module)


def client(service):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")


def instance(itype, cores, threads=2):
    return {"InstanceId": "i-" + itype.replace(".", ""), "InstanceType": itype,
            "CpuOptions": {"CoreCount": cores, "ThreadsPerCore": threads}}


def test_quota_is_read():
    sq = client("service-quotas")
    with Stubber(sq) as stub:
        stub.add_response("get_service_quota", {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": 8.0}},
                          {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
        assert quota_module.read_quota(sq, "L-DB2E81BA") == (8.0, "")


@pytest.mark.parametrize("code", ["AccessDeniedException", "NoSuchResourceException"])
def test_unreadable_quota_is_reported_not_raised(code):
    sq = client("service-quotas")
    with Stubber(sq) as stub:
        stub.add_client_error("get_service_quota", service_error_code=code, service_message="nope")
        value, reason = quota_module.read_quota(sq, "L-DB2E81BA")
    assert value is None and reason.startswith(code)


def test_running_vcpus_count_only_the_quota_family():
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": [
            {"Instances": [instance("g5.xlarge", 2), instance("vt1.3xlarge", 6)]},
            {"Instances": [instance("p3.2xlarge", 4), instance("t3.micro", 1)]},
        ]}, {"Filters": [{"Name": "instance-state-name", "Values": ["pending", "running"]}]})
        assert quota_module.running_vcpus(ec2, "^(g|vt)") == 4 + 12


@pytest.mark.parametrize("quota, used, needed, fits, available", [
    (0.0, 0, 4, False, 0.0),      # a new account: G quota 0
    (8.0, 4, 4, True, 4.0),       # exactly fits
    (8.0, 8, 4, False, 0.0),      # the quota is used up by running boxes
    (96.0, 0, 192, False, 96.0),  # p5.48xlarge needs more than the quota
    (None, 4, 4, True, None),     # unreadable: warn and go on
])
def test_decide(quota, used, needed, fits, available):
    assert quota_module.decide(quota, used, needed) == {"fits": fits, "available": available}
