#!/usr/bin/python
"""Cancel the spot requests of a box's spot instances, whatever their state."""

DOCUMENTATION = r"""
module: ec2_box_spot_cancel
short_description: Cancel the persistent spot requests of a gpubox box, before its instances are terminated
description:
  - A persistent spot request launches a new instance when its instance is terminated; teardown cancels it first.
  - Cancels the requests given (the plan found them by the box's instances), in any state. amazon.aws.ec2_spot_instance
    cancels only open and active requests, and a stopped box's request is disabled.
options:
  ids:
    description: The spot request ids (sir-...).
    type: list
    elements: str
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author: gpubox developers (@gpubox)
"""

EXAMPLES = r"""
- name: Cancel the box's spot requests
  gpubox.box.ec2_box_spot_cancel:
    ids: [sir-0123456789abcdef0]
"""

RETURN = r"""
cancelled:
  description: The requests cancelled, with the state AWS reports.
  returned: success
  type: list
  elements: dict
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.gpubox.box.plugins.module_utils.box_retry import RETRY


def main():
    module = AnsibleAWSModule(argument_spec={"ids": {"type": "list", "elements": "str", "required": True}},
                              supports_check_mode=False)
    ids = module.params["ids"]
    if not ids:
        module.exit_json(changed=False, cancelled=[])
    try:
        answer = module.client("ec2", retry_decorator=RETRY).cancel_spot_instance_requests(
            aws_retry=True, SpotInstanceRequestIds=ids)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Could not cancel the spot requests {', '.join(ids)}")
    cancelled = [{"id": r["SpotInstanceRequestId"], "state": r.get("State", "")}
                 for r in answer.get("CancelledSpotInstanceRequests", [])]
    module.exit_json(changed=True, cancelled=cancelled)


if __name__ == "__main__":
    main()
