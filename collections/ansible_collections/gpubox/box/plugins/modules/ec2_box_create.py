#!/usr/bin/python
"""Create a box's instance or data volume once, with an idempotency token derived from the box."""

DOCUMENTATION = r"""
module: ec2_box_create
short_description: Create a gpubox box's key pair, security group, data volume or instance, never taking over one
description:
  - Creates only. A key pair or security group of the box's name that appeared since the plan was made is used
    when it is the box's own (another run of yours at the same time); anything else is a failure that changes
    nothing. amazon.aws.ec2_key and ec2_security_group would update, re-tag and re-rule what they find.
  - "Calls RunInstances or CreateVolume with a ClientToken derived from the box's owner, name, resource and
    generation (gpubox.box's box_identity.client_token), so that two runs creating the same box at once create
    it once: EC2 answers a repeated token with the first request's resource."
  - amazon.aws.ec2_instance and amazon.aws.ec2_vol send a random token of their own and have no option to set one.
  - A token stays spent for at least a day after its resource is gone. When EC2 answers with a resource made
    long ago that is no longer listed, or one that is listed as terminated or deleted, the next generation is
    tried; one made just now must show up (EC2 may list it, and its tags, a few seconds late). An instance EC2
    ended as it started, for a reason other than a user's, is a failure that names the reason. IdempotentParameterMismatch means another
    request used the token with other settings, a run at the same time or one that is over; only when, for about
    15 seconds, no live instance or data volume of the box shows up is the next generation tried.
  - What EC2 answers must carry the box's tags and owner, or the module fails.
  - Waits until the instance runs or the volume is available.
options:
  resource:
    description: What to create.
    type: str
    required: true
    choices: [instance, volume, key_pair, security_group]
  token:
    description:
      - The token's parts, from the plan (gpubox.box.box_plan), C(owner), C(name), C(resource) and C(generation),
        and C(salt), the box's security group id (a teardown deletes it, so a box launched again meets no spent token).
    type: dict
    required: true
  params:
    description: RunInstances, CreateVolume, ImportKeyPair or CreateSecurityGroup parameters from the plan, in boto3's form.
    type: dict
    required: true
  public_key_file:
    description: The public key to import (key_pair).
    type: path
  ingress:
    description: The inbound rules of a new security group, in boto3's IpPermissions form (security_group).
    type: list
    elements: dict
    default: []
  security_group_ids:
    description: Security groups of the instance (known only once the group exists).
    type: list
    elements: str
    default: []
  wait_timeout:
    description: Seconds to wait for the instance to run or the volume to be available.
    type: int
    default: 600
  attempts:
    description:
      - The launches to try, in order (resource=instance), from the plan; each has a C(label) (zone, type, market)
        and its RunInstances C(params), which replace I(params). Its action plugin (plugins/action/ec2_box_create.py)
        runs the module once per launch and prints one line each; when AWS has no capacity for it (or the quota or
        the spot price is short), the next is tried. A launch after the first first checks that no run at the same
        time created the box meanwhile.
    type: list
    elements: dict
  retry:
    description:
      - With C(until_up=true), the attempts are swept again every C(interval) seconds until C(timeout) seconds have
        passed (the action plugin).
    type: dict
  look_first:
    description: Refuse when a live instance of the box exists already (a launch after the first).
    type: bool
    default: false
author: gpubox developers (@gpubox)
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
attempts:
  description: One line per launch tried (zone, type, market and AWS's answer), with I(attempts).
  returned: with attempts
  type: list
  elements: str
capacity:
  description: True when AWS refused for a reason another zone, type or market may not have (no capacity, quota).
  returned: failure
  type: bool
code:
  description: AWS's error code of a refused launch.
  returned: failure
  type: str
id:
  description: The instance, volume or security group id, or the key pair's name.
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
import datetime
import time

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing dependency

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.gpubox.box.plugins.module_utils import box_gather
from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity
from ansible_collections.gpubox.box.plugins.module_utils.box_retry import RETRY

# Generations tried past the plan's before giving up (each spent one is a box made and removed within a day).
MAX_GENERATIONS = 20
DEAD = {"instance": ("shutting-down", "terminated"), "volume": ("deleting", "deleted", "error")}
# EC2 lists a new resource (and its tags) a few seconds late: how often, and how far apart, to look again.
MISMATCH_POLLS = 4
POLL_SECONDS = 5
# An answer about a resource made this recently is a new one (not a spent token's): it must show up, not be gone.
FRESH = datetime.timedelta(minutes=10)


class Refused(Exception):
    """Creating would take over or duplicate something: nothing was changed."""


def _code(error):
    return error.response.get("Error", {}).get("Code", "")


def _yours(tags, token):
    return identity.is_gpubox(tags, token["name"]) and tags.get(identity.OWNER) == token["owner"]


def _with_generation(params, generation):
    """params with gpubox:generation set on every tag specification."""
    result = copy.deepcopy(params)
    for spec in result.get("TagSpecifications", []):
        spec["Tags"] = [t for t in spec["Tags"] if t["Key"] != identity.GENERATION]
        spec["Tags"].append({"Key": identity.GENERATION, "Value": str(generation)})
    return result


def _call(client, resource, token, params, security_group_ids):
    """(id, when it was made): a new resource, or the one EC2 made for this token before."""
    if resource == "instance":
        extra = {"SecurityGroupIds": security_group_ids} if security_group_ids else {}
        answer = client.run_instances(aws_retry=True, ClientToken=token, MinCount=1, MaxCount=1, **params, **extra)["Instances"][0]
        return answer["InstanceId"], answer.get("LaunchTime")
    answer = client.create_volume(aws_retry=True, ClientToken=token, **params)
    return answer["VolumeId"], answer.get("CreateTime")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _fresh(made, now):
    return isinstance(made, datetime.datetime) and now - made.astimezone(datetime.timezone.utc) < FRESH


def _settled(client, resource, resource_id, made, sleep):
    """(state, tags, state reason) of the resource a create call answered with; state None: not listed.

    One that EC2 lists as terminated or deleted is final. One made just now that is not listed yet, or not yet
    with its tags, must show up: EC2 lists new resources a few seconds late. One made long ago that is not listed
    is a spent token's."""
    now = _now()
    for poll in range(MISMATCH_POLLS * 3):
        if poll:
            sleep(POLL_SECONDS)
        state, tags, reason = _described(client, resource, resource_id)
        if not _fresh(made, now) or state in DEAD[resource] or (state is not None and tags):
            return state, tags, reason
    raise Refused(f"EC2 created {resource_id} but does not list it with its tags after "
                  f"{MISMATCH_POLLS * 3 * POLL_SECONDS} s: run launch again, which finds it (or says what to remove).")


def _described(client, resource, resource_id):
    """(state, tags, state reason) of the instance or volume; (None, {}, "") when EC2 does not list it."""
    try:
        if resource == "instance":
            reservations = client.describe_instances(aws_retry=True, InstanceIds=[resource_id])["Reservations"]
            found = reservations[0]["Instances"][0] if reservations else None
            state = found["State"]["Name"] if found else None
            reason = (found or {}).get("StateReason", {}).get("Message", "")
        else:
            volumes = client.describe_volumes(aws_retry=True, VolumeIds=[resource_id])["Volumes"]
            found = volumes[0] if volumes else None
            state, reason = (found["State"] if found else None), ""
    except botocore.exceptions.ClientError as e:
        if _code(e).endswith(".NotFound"):
            return None, {}, ""
        raise
    return state, box_gather.tags_dict((found or {}).get("Tags")), reason


# What AWS answers when another zone, type or market (or a later try) may succeed: no capacity, a quota, a price.
CAPACITY_CODES = ("InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity", "Unsupported",
                  "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded", "VcpuLimitExceeded", "InstanceLimitExceeded",
                  "InsufficientFreeAddressesInSubnet")

# How an instance ends that someone ended on purpose (a spent token's); any other reason is a failure to report.
ENDED_ON_PURPOSE = ("Client.UserInitiatedShutdown", "Client.InstanceInitiatedShutdown", "Client.UserInitiatedHibernate")


def _live_of_box(client, resource, token):
    """Ids of the box's live instances or data volumes, of this owner, whatever their generation."""
    filters = [{"Name": f"tag:{identity.MANAGED_BY}", "Values": [identity.MANAGER]},
               {"Name": f"tag:{identity.NAME}", "Values": [identity.escape_filter_value(token["name"])]},
               {"Name": f"tag:{identity.OWNER}", "Values": [identity.escape_filter_value(token["owner"])]}]
    if resource == "instance":
        filters.append({"Name": "instance-state-name", "Values": list(identity.LIVE_STATES)})
        reservations = client.describe_instances(aws_retry=True, Filters=filters)["Reservations"]
        return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])
    filters.append({"Name": f"tag:{identity.ROLE}", "Values": ["data"]})
    return sorted(v["VolumeId"] for v in client.describe_volumes(aws_retry=True, Filters=filters)["Volumes"]
                  if v["State"] not in DEAD["volume"])


def _made_meanwhile(client, resource, token, sleep):
    """The box's live resources that another run made while this one planned (EC2 lists new ones late: look a while)."""
    for poll in range(MISMATCH_POLLS):
        if poll:
            sleep(POLL_SECONDS)
        live = _live_of_box(client, resource, token)
        if live:
            return live
    return []


def create_once(client, resource, token, params, security_group_ids=(), sleep=time.sleep):
    """(id, generation): the instance or volume of the first generation whose token is not spent."""
    start = int(token["generation"])
    for generation in range(start, start + MAX_GENERATIONS):
        client_token = identity.client_token(token["owner"], token["name"], token["resource"], generation,
                                             token.get("salt", ""))
        try:
            resource_id, made = _call(client, resource, client_token, _with_generation(params, generation),
                                      list(security_group_ids))
        except botocore.exceptions.ClientError as e:
            if _code(e) != "IdempotentParameterMismatch":
                raise
            live = _made_meanwhile(client, resource, token, sleep)
            if live:
                raise Refused(
                    f"Another run created box '{token['name']}' at the same time with other settings "
                    f"({', '.join(live)}). Nothing else was created: run launch again, which uses it.") from e
            continue
        state, tags, reason = _settled(client, resource, resource_id, made, sleep)
        if resource == "instance" and state in DEAD[resource] and reason and _fresh(made, _now()) \
                and not reason.startswith(ENDED_ON_PURPOSE):
            raise Refused(f"EC2 ended instance {resource_id} as it started: {reason}. Nothing else was created; fix "
                          "that (an encryption key the instance may not use, a limit), then run launch again.")
        if state is None or state in DEAD[resource]:
            continue
        if not _yours(tags, token):
            raise Refused(f"EC2 answered with {resource_id}, which is not box '{token['name']}' of owner "
                          f"{token['owner']}: nothing was created.")
        return resource_id, generation
    raise Refused(f"The ClientTokens of {MAX_GENERATIONS} generations of box '{token['name']}' are spent "
                  "(EC2 keeps each for a day after its resource is gone): try again tomorrow.")


def _existing(client, resource, params):
    """The key pair or security group of this name (in this VPC) that exists now, or None."""
    if resource == "key_pair":
        filters = [{"Name": "key-name", "Values": [identity.escape_filter_value(params["KeyName"])]}]
        found = [k for k in client.describe_key_pairs(aws_retry=True, Filters=filters)["KeyPairs"] if k["KeyName"] == params["KeyName"]]
        return (found[0]["KeyName"], box_gather.tags_dict(found[0].get("Tags"))) if found else None
    filters = [{"Name": "group-name", "Values": [identity.escape_filter_value(params["GroupName"])]},
               {"Name": "vpc-id", "Values": [params["VpcId"]]}]
    found = [g for g in client.describe_security_groups(aws_retry=True, Filters=filters)["SecurityGroups"]
             if g["GroupName"] == params["GroupName"]]
    return (found[0]["GroupId"], box_gather.tags_dict(found[0].get("Tags"))) if found else None


def capacity_failure(error):
    """The answer to a launch AWS refused for want of capacity, quota or price ({} for any other error): the
    action plugin then tries the next launch of the plan."""
    if _code(error) not in CAPACITY_CODES:
        return {}
    return {"msg": f"{_code(error)}: {error.response.get('Error', {}).get('Message', '')}", "code": _code(error),
            "capacity": True}


def create_named(client, resource, token, params, public_key=b"", ingress=()):
    """(id, changed): create the key pair or security group; one of the box's own that a run at the same time made
    is used as it is; another is a refusal."""
    try:
        if resource == "key_pair":
            client.import_key_pair(aws_retry=True, PublicKeyMaterial=public_key, **params)
            return params["KeyName"], True
        group_id = client.create_security_group(aws_retry=True, **params)["GroupId"]
        if ingress:
            client.authorize_security_group_ingress(aws_retry=True, GroupId=group_id, IpPermissions=list(ingress))
        return group_id, True
    except botocore.exceptions.ClientError as e:
        if not _code(e).endswith(".Duplicate"):
            raise
        existing = _existing(client, resource, params)
        if existing and _yours(existing[1], token):
            return existing[0], False
        what = "key pair" if resource == "key_pair" else "security group"
        name = params.get("KeyName") or params.get("GroupName")
        raise Refused(f"A {what} named {name} appeared since gpubox looked, and it is not box '{token['name']}' of "
                      f"owner {token['owner']}: nothing of it was changed. Run launch again to see whose it is.") from e


def wait_until(client, resource, resource_id, timeout):
    waiter = client.get_waiter("instance_running" if resource == "instance" else "volume_available")
    delay = 5 if resource == "instance" else 2
    waiter.wait(**({"InstanceIds": [resource_id]} if resource == "instance" else {"VolumeIds": [resource_id]}),
                WaiterConfig={"Delay": delay, "MaxAttempts": max(1, timeout // delay)})


def main():
    module = AnsibleAWSModule(
        argument_spec={
            "resource": {"type": "str", "required": True, "choices": ["instance", "volume", "key_pair", "security_group"]},
            "token": {"type": "dict", "required": True, "no_log": False},  # the box's identity, not a secret
            "params": {"type": "dict", "required": True},
            "security_group_ids": {"type": "list", "elements": "str", "default": []},
            "public_key_file": {"type": "path"},
            "ingress": {"type": "list", "elements": "dict", "default": []},
            "wait_timeout": {"type": "int", "default": 600},
            "attempts": {"type": "list", "elements": "dict"},
            "retry": {"type": "dict"},
            "look_first": {"type": "bool", "default": False},
        },
        required_if=[("resource", "key_pair", ["public_key_file"])],
        supports_check_mode=False,
    )
    client = module.client("ec2", retry_decorator=RETRY)
    resource, params, token = module.params["resource"], module.params["params"], module.params["token"]
    started = time.monotonic()
    try:
        if resource in ("key_pair", "security_group"):
            public_key = b""
            if resource == "key_pair":
                with open(module.params["public_key_file"], "rb") as f:
                    public_key = f.read()
            resource_id, changed = create_named(client, resource, token, params, public_key, module.params["ingress"])
            module.exit_json(changed=changed, id=resource_id)
        if module.params["look_first"]:
            live = _live_of_box(client, resource, token)
            if live:
                raise Refused(f"Another run created box '{token['name']}' meanwhile ({', '.join(live)}): nothing else was "
                              "created. Run launch again, which uses it.")
        resource_id, generation = create_once(client, resource, token, params, module.params["security_group_ids"])
    except Refused as e:
        module.fail_json(msg=str(e))
    except botocore.exceptions.ClientError as e:
        refused = capacity_failure(e)
        if refused:
            module.fail_json(**refused)
        module.fail_json_aws(e, msg=f"Could not create the {resource.replace('_', ' ')}")
    except botocore.exceptions.BotoCoreError as e:
        module.fail_json_aws(e, msg=f"Could not create the {resource.replace('_', ' ')}")
    result = {"changed": True, "id": resource_id, "generation": generation}
    try:
        wait_until(client, resource, resource_id, max(1, module.params["wait_timeout"] - int(time.monotonic() - started)))
        if resource == "instance":
            answer = client.describe_instances(aws_retry=True, InstanceIds=[resource_id])["Reservations"][0]["Instances"][0]
            result["instance"] = box_gather.snake_case(box_gather.plain(answer))
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"{resource.capitalize()} {resource_id} was created, but waiting for it failed", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
