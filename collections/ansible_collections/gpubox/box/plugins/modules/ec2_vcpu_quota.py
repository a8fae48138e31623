#!/usr/bin/python
"""Would launching an instance stay within its family's vCPU quota?"""

DOCUMENTATION = r"""
module: ec2_vcpu_quota
short_description: Read an EC2 vCPU quota and the vCPUs already running under it
description:
  - Reads the quota with the Service Quotas API and sums the vCPUs of pending and running
    instances whose type matches I(family_pattern).
  - When the quota cannot be read (access denied, an endpoint without Service Quotas), returns
    C(quota=null) and the reason, so the caller can warn and go on.
options:
  quota_code:
    description: Service Quotas code, for example C(L-DB2E81BA).
    type: str
    required: true
  family_pattern:
    description: Regular expression matched against the instance type's family (the part before the dot).
    type: str
    required: true
  vcpus_needed:
    description: vCPUs of the instance about to be launched.
    type: int
    required: true
  quota_name:
    description: The quota's name, for the warning when it cannot be read.
    type: str
    default: the vCPU quota
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
quota: {description: The quota in vCPUs, or null when it could not be read., returned: always, type: float}
quota_error: {description: Why the quota could not be read., returned: always, type: str}
used: {description: vCPUs of pending and running instances in the family., returned: always, type: int}
available: {description: Quota minus used, or null., returned: always, type: float}
fits: {description: False only when the quota was read and the launch would exceed it., returned: always, type: bool}
"""

import re

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def read_quota(client, quota_code):
    """(value, '') or (None, reason)."""
    try:
        response = client.get_service_quota(ServiceCode="ec2", QuotaCode=quota_code)
    except botocore.exceptions.ClientError as e:
        error = e.response.get("Error", {})
        return None, f"{error.get('Code', 'Error')}: {error.get('Message', str(e))}"
    except botocore.exceptions.BotoCoreError as e:
        return None, str(e)
    return float(response["Quota"]["Value"]), ""


def running_vcpus(client, family_pattern):
    pattern = re.compile(family_pattern)
    pages = client.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    used = 0
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                if not pattern.match(instance["InstanceType"].split(".")[0]):
                    continue
                cpu = instance.get("CpuOptions", {})
                used += cpu.get("CoreCount", 1) * cpu.get("ThreadsPerCore", 1)
    return used


def decide(quota, used, needed):
    if quota is None:
        return {"available": None, "fits": True}
    available = quota - used
    return {"available": available, "fits": needed <= available}


def main():
    module = AnsibleAWSModule(
        argument_spec={
            "quota_code": {"type": "str", "required": True},
            "family_pattern": {"type": "str", "required": True},
            "vcpus_needed": {"type": "int", "required": True},
            "quota_name": {"type": "str", "default": "the vCPU quota"},
        },
        supports_check_mode=True,
    )
    quota, quota_error = read_quota(module.client("service-quotas"), module.params["quota_code"])
    if quota is None:
        module.warn(
            f"Could not read {module.params['quota_name']} ({module.params['quota_code']}): {quota_error.rstrip('.')}. "
            "Going on; if the launch fails with VcpuLimitExceeded, request a quota increase."
        )
    try:
        used = running_vcpus(module.client("ec2"), module.params["family_pattern"])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg="Could not count the running instances")
    module.exit_json(changed=False, quota=quota, quota_error=quota_error, used=used,
                     **decide(quota, used, module.params["vcpus_needed"]))


if __name__ == "__main__":
    main()
