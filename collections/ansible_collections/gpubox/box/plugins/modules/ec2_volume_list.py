#!/usr/bin/python
"""EBS volumes matching DescribeVolumes filters."""

DOCUMENTATION = r"""
module: ec2_volume_list
short_description: List the EBS volumes that match DescribeVolumes filters
description:
  - A narrow stand-in for amazon.aws.ec2_vol_info, which fails on volumes that report no snapshot id.
options:
  filters:
    description:
      - "DescribeVolumes filters, for example C({'tag:Name': 'data', 'attachment.instance-id': 'i-0123'})."
      - A list value matches any of its items.
    type: dict
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
volumes:
  description: Matching volumes that are not being deleted.
  returned: always
  type: list
  elements: dict
  contains:
    id: {description: Volume id., type: str}
    zone: {description: Availability zone., type: str}
    size: {description: Size in GiB., type: int}
    state: {description: Volume state., type: str}
    encrypted: {description: Whether the volume is encrypted., type: bool}
    instance_ids: {description: Instances it is attached to., type: list}
    tags: {description: Its tags., type: dict}
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def list_volumes(client, filters):
    aws_filters = [
        {"Name": k, "Values": [str(x) for x in v] if isinstance(v, list) else [str(v)]}
        for k, v in filters.items()
    ]
    pages = client.get_paginator("describe_volumes").paginate(Filters=aws_filters)
    volumes = []
    for page in pages:
        for v in page["Volumes"]:
            if v["State"] in ("deleting", "deleted"):
                continue
            volumes.append({
                "id": v["VolumeId"],
                "zone": v["AvailabilityZone"],
                "size": v["Size"],
                "state": v["State"],
                "encrypted": v.get("Encrypted", False),
                "instance_ids": [a["InstanceId"] for a in v.get("Attachments", [])],
                "tags": {t["Key"]: t["Value"] for t in v.get("Tags", [])},
            })
    return sorted(volumes, key=lambda v: v["id"])


def main():
    module = AnsibleAWSModule(argument_spec={"filters": {"type": "dict", "required": True}}, supports_check_mode=True)
    client = module.client("ec2")
    try:
        volumes = list_volumes(client, module.params["filters"])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg="Could not list EBS volumes")
    module.exit_json(changed=False, volumes=volumes)


if __name__ == "__main__":
    main()
