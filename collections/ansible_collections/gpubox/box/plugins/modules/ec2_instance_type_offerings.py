#!/usr/bin/python
"""Which availability zones of a region offer an EC2 instance type."""

DOCUMENTATION = r"""
module: ec2_instance_type_offerings
short_description: List the availability zones that offer an EC2 instance type
description:
  - Calls DescribeInstanceTypeOfferings by availability zone. amazon.aws has no module for it.
  - An empty list means the type is not offered in the region (or no longer exists).
options:
  instance_type:
    description: The instance type, for example C(g5.xlarge).
    type: str
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
zones:
  description: Availability zones that offer the type, sorted.
  returned: always
  type: list
  elements: str
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def offered_zones(client, instance_type):
    paginator = client.get_paginator("describe_instance_type_offerings")
    pages = paginator.paginate(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": [instance_type]}],
    )
    return sorted({o["Location"] for page in pages for o in page["InstanceTypeOfferings"]})


def main():
    module = AnsibleAWSModule(
        argument_spec={"instance_type": {"type": "str", "required": True}},
        supports_check_mode=True,
    )
    client = module.client("ec2")
    try:
        zones = offered_zones(client, module.params["instance_type"])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg="Could not list the zones that offer the instance type")
    module.exit_json(changed=False, zones=zones)


if __name__ == "__main__":
    main()
