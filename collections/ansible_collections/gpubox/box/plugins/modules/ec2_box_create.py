#!/usr/bin/python
"""Create a box's instance or data volume once, with an idempotency token derived from the box."""

DOCUMENTATION = r"""
module: ec2_box_create
short_description: Create a gpubox box's instance or data volume exactly once, with a ClientToken derived from the box
description:
  - "Calls RunInstances or CreateVolume with a ClientToken derived from the box's owner, name, resource and
    generation (gpubox.box's box_identity.client_token), so that two runs creating the same box at once create
    it once: EC2 answers a repeated token with the first request's resource."
  - amazon.aws.ec2_instance and amazon.aws.ec2_vol send a random token of their own and have no option to set one.
  - A token stays spent for at least a day after its resource is gone. When EC2 answers with a resource that
    is terminated or deleted, or with IdempotentParameterMismatch and no live resource of that generation
    exists, the next generation is tried. A live resource of the same generation made with other settings
    (another run at the same time) is a failure that says so.
  - Waits until the instance runs or the volume is available.
options:
  resource:
    description: What to create.
    type: str
    required: true
    choices: [instance, volume]
  token:
    description: The token's parts, from the plan (gpubox.box.box_plan), C(owner), C(name), C(resource) and C(generation).
    type: dict
    required: true
  params:
    description: RunInstances or CreateVolume parameters from the plan, in boto3's form.
    type: dict
    required: true
  security_group_ids:
    description: Security groups of the instance (known only once the group exists).
    type: list
    elements: str
    default: []
  wait_timeout:
    description: Seconds to wait for the instance to run or the volume to be available.
    type: int
    default: 600
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Launch the box's instance
  gpubox.box.ec2_box_create:
    resource: instance
    token: "{{ plan.create.instance.token }}"
    params: "{{ plan.create.instance.params }}"
    security_group_ids: [sg-0123456789abcdef0]
"""

RETURN = r"""
id:
  description: The instance or volume id.
  returned: success
  type: str
generation:
  description: The generation whose token created (or found) the resource.
  returned: success
  type: int
instance:
  description: The instance as DescribeInstances returns it, in snake_case with a tags dict (resource=instance).
  returned: success
  type: dict
"""

import copy
import time

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.gpubox.box.plugins.module_utils import box_gather
from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity

# Generations tried past the plan's before giving up (each spent one is a box made and removed within a day).
MAX_GENERATIONS = 20
DEAD = {"instance": ("shutting-down", "terminated"), "volume": ("deleting", "deleted", "error")}


class Spent(Exception):
    """The token of this generation belongs to a resource that is gone."""


def _with_generation(params, generation):
    """params with gpubox:generation set on every tag specification."""
    result = copy.deepcopy(params)
    for spec in result.get("TagSpecifications", []):
        spec["Tags"] = [t for t in spec["Tags"] if t["Key"] != identity.GENERATION]
        spec["Tags"].append({"Key": identity.GENERATION, "Value": str(generation)})
    return result


def _call(client, resource, token, params, security_group_ids):
    if resource == "instance":
        extra = {"SecurityGroupIds": security_group_ids} if security_group_ids else {}
        answer = client.run_instances(ClientToken=token, MinCount=1, MaxCount=1, **params, **extra)
        return answer["Instances"][0]["InstanceId"]
    return client.create_volume(ClientToken=token, **params)["VolumeId"]


def _state(client, resource, resource_id):
    try:
        if resource == "instance":
            reservations = client.describe_instances(InstanceIds=[resource_id])["Reservations"]
            return reservations[0]["Instances"][0]["State"]["Name"] if reservations else "terminated"
        volumes = client.describe_volumes(VolumeIds=[resource_id])["Volumes"]
        return volumes[0]["State"] if volumes else "deleted"
    except botocore.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code", "").endswith(".NotFound"):
            return "terminated" if resource == "instance" else "deleted"
        raise


def _live_with_generation(client, resource, token, generation):
    """Ids of live resources of this box and generation (made by another run with other settings)."""
    filters = [{"Name": f"tag:{identity.MANAGED_BY}", "Values": [identity.MANAGER]},
               {"Name": f"tag:{identity.NAME}", "Values": [identity.escape_filter_value(token["name"])]},
               {"Name": f"tag:{identity.GENERATION}", "Values": [str(generation)]}]
    if resource == "instance":
        filters.append({"Name": "instance-state-name", "Values": list(identity.LIVE_STATES)})
        reservations = client.describe_instances(Filters=filters)["Reservations"]
        return [i["InstanceId"] for r in reservations for i in r["Instances"]]
    filters.append({"Name": f"tag:{identity.ROLE}", "Values": ["data"]})
    return [v["VolumeId"] for v in client.describe_volumes(Filters=filters)["Volumes"]
            if v["State"] not in DEAD["volume"]]


def create_once(client, resource, token, params, security_group_ids=()):
    """(id, generation): the resource of the first generation whose token is not spent."""
    start = int(token["generation"])
    for generation in range(start, start + MAX_GENERATIONS):
        client_token = identity.client_token(token["owner"], token["name"], token["resource"], generation)
        try:
            resource_id = _call(client, resource, client_token, _with_generation(params, generation),
                                list(security_group_ids))
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") != "IdempotentParameterMismatch":
                raise
            live = _live_with_generation(client, resource, token, generation)
            if live:
                raise RuntimeError(
                    f"Another run created box '{token['name']}' at the same time with other settings ({', '.join(live)}). "
                    "Nothing else was created: wait for it to finish, then run launch again.") from e
            continue
        if _state(client, resource, resource_id) in DEAD[resource]:
            continue
        return resource_id, generation
    raise RuntimeError(f"The ClientTokens of {MAX_GENERATIONS} generations of box '{token['name']}' are spent "
                       "(each is kept by EC2 for a day after its resource is gone): try again tomorrow.")


def wait_until(client, resource, resource_id, timeout):
    waiter = client.get_waiter("instance_running" if resource == "instance" else "volume_available")
    delay = 5 if resource == "instance" else 2
    waiter.wait(**({"InstanceIds": [resource_id]} if resource == "instance" else {"VolumeIds": [resource_id]}),
                WaiterConfig={"Delay": delay, "MaxAttempts": max(1, timeout // delay)})


def main():
    module = AnsibleAWSModule(
        argument_spec={
            "resource": {"type": "str", "required": True, "choices": ["instance", "volume"]},
            "token": {"type": "dict", "required": True},
            "params": {"type": "dict", "required": True},
            "security_group_ids": {"type": "list", "elements": "str", "default": []},
            "wait_timeout": {"type": "int", "default": 600},
        },
        supports_check_mode=False,
    )
    client = module.client("ec2")
    resource = module.params["resource"]
    started = time.monotonic()
    try:
        resource_id, generation = create_once(client, resource, module.params["token"], module.params["params"],
                                              module.params["security_group_ids"])
    except RuntimeError as e:
        module.fail_json(msg=str(e))
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Could not create the {resource}")
    result = {"changed": True, "id": resource_id, "generation": generation}
    try:
        wait_until(client, resource, resource_id, max(1, module.params["wait_timeout"] - int(time.monotonic() - started)))
        if resource == "instance":
            answer = client.describe_instances(InstanceIds=[resource_id])["Reservations"][0]["Instances"][0]
            result["instance"] = box_gather.snake_case(box_gather.plain(answer))
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"{resource.capitalize()} {resource_id} was created, but waiting for it failed", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
