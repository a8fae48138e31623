"""gpubox's gather: read everything a decision about one box (or all boxes) needs, in one pass.

Called by the gpubox.box.box_gather action plugin with boto3 clients. Resources are found by gpubox's
own tags with exact, escaped values (never by a Name tag, a prefix or a wildcard); the planner checks the
tags again. Reads depend on the command: status reads the instances only, a launch reads the network,
image, offerings and quota as well. A failed read is recorded, not raised: the planner turns it into a
refusal that says what to do.
"""

import datetime
import re

from ansible_collections.gpubox.box.plugins.module_utils import box_catalog as catalog
from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity

try:
    import botocore
except ImportError:  # the action plugin reports the missing dependency
    botocore = None

# What each command reads besides the caller's identity.
READS = {
    "status": ("all_instances", "spot_prices"),
    "find": ("instances", "volumes", "spot_prices"),
    "autostop": ("instances", "volumes"),
    "find_all": ("all_instances",),
    "stop": ("instances", "volumes"),
    "start": ("instances",),
    # bake.yml: the box, and the names its images already have; images.yml: your images, their snapshots and the
    # instances that run from them. (launch with ami=baked and teardown read images too: see gather.)
    "bake": ("instances", "baked_images"),
    "images": ("all_instances", "baked_images", "snapshots"),
    "teardown": ("instances", "volumes", "security_groups", "key_pairs", "users", "spot_requests"),
    "launch": ("instances", "volumes", "security_groups", "key_pairs", "network", "offerings", "image", "quota",
               "spot_prices"),
}


def plain(value):
    """boto3's answer with datetimes as ISO strings (it goes back to Ansible as JSON)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def _snake(name):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)).lower()


def snake_case(value):
    """DescribeInstances' CamelCase keys in snake_case (as amazon.aws returns them), Tags as a dict."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if key == "Tags":
                result["tags"] = tags_dict(item)
            else:
                result[_snake(key)] = snake_case(item)
        return result
    if isinstance(value, list):
        return [snake_case(v) for v in value]
    return value


def tags_dict(tags):
    return {t["Key"]: t["Value"] for t in tags or []}


def _tag_filters(name=None):
    filters = [{"Name": f"tag:{identity.MANAGED_BY}", "Values": [identity.MANAGER]}]
    if name is not None:
        filters.append({"Name": f"tag:{identity.NAME}", "Values": [identity.escape_filter_value(name)]})
    return filters


def _paginate(client, operation, key, **kwargs):
    pages = client.get_paginator(operation).paginate(**kwargs)
    return [item for page in pages for item in page[key]]


def read_instances(ec2, name=None, states=None):
    filters = _tag_filters(name)
    if states:
        filters.append({"Name": "instance-state-name", "Values": list(states)})
    reservations = _paginate(ec2, "describe_instances", "Reservations", Filters=filters)
    instances = [snake_case(plain(i)) for r in reservations for i in r["Instances"]]
    # Exact tags again: an emulator or a future API that matched loosely must not widen the box.
    return [i for i in instances if identity.is_gpubox(i.get("tags"), name)]


def read_volumes(ec2, name):
    volumes = []
    for v in _paginate(ec2, "describe_volumes", "Volumes", Filters=_tag_filters(name)):
        tags = tags_dict(v.get("Tags"))
        if not identity.is_gpubox(tags, name):
            continue
        volumes.append({
            "id": v["VolumeId"], "zone": v["AvailabilityZone"], "size": v["Size"], "state": v["State"],
            "type": v.get("VolumeType", ""), "encrypted": v.get("Encrypted", False), "tags": tags,
            "create_time": plain(v.get("CreateTime", "")),
            "attachments": [{"instance_id": a["InstanceId"], "device": a.get("Device", "")}
                            for a in v.get("Attachments", [])],
        })
    return sorted(volumes, key=lambda v: v["id"])


def _ingress(permission):
    return {
        "protocol": permission.get("IpProtocol"),
        "from_port": permission.get("FromPort"),
        "to_port": permission.get("ToPort"),
        "cidrs": sorted(r["CidrIp"] for r in permission.get("IpRanges", [])),
        "ipv6_cidrs": sorted(r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])),
        "other": bool(permission.get("UserIdGroupPairs") or permission.get("PrefixListIds")),
    }


def _users(ec2, filter_name, value):
    filters = [{"Name": filter_name, "Values": [value]},
               {"Name": "instance-state-name", "Values": list(identity.LIVE_STATES)}]
    reservations = _paginate(ec2, "describe_instances", "Reservations", Filters=filters)
    return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])


def read_security_groups(ec2, name, with_users=False):
    """Security groups named gpubox-NAME, whoever made them (the planner refuses to take over another's)."""
    resource = identity.resource_name(name)
    filters = [{"Name": "group-name", "Values": [identity.escape_filter_value(resource)]}]
    groups = []
    for g in _paginate(ec2, "describe_security_groups", "SecurityGroups", Filters=filters):
        if g["GroupName"] != resource:
            continue
        group = {"group_id": g["GroupId"], "group_name": g["GroupName"], "vpc_id": g.get("VpcId", ""),
                 "tags": tags_dict(g.get("Tags")), "ingress": [_ingress(p) for p in g.get("IpPermissions", [])]}
        if with_users and identity.is_gpubox(group["tags"], name):
            group["used_by"] = _users(ec2, "instance.group-id", g["GroupId"])
        groups.append(group)
    return groups


def read_key_pairs(ec2, name, with_users=False):
    """Key pairs named gpubox-NAME, whoever made them."""
    resource = identity.resource_name(name)
    filters = [{"Name": "key-name", "Values": [identity.escape_filter_value(resource)]}]
    keys = []
    for k in ec2.describe_key_pairs(Filters=filters, IncludePublicKey=True)["KeyPairs"]:
        if k["KeyName"] != resource:
            continue
        key = {"name": k["KeyName"], "id": k.get("KeyPairId", ""), "fingerprint": k.get("KeyFingerprint", ""),
               "tags": tags_dict(k.get("Tags")), "public_key": " ".join(k.get("PublicKey", "").split()[:2])}
        if with_users and identity.is_gpubox(key["tags"], name):
            key["used_by"] = _users(ec2, "key-name", k["KeyName"])
        keys.append(key)
    return keys


def read_network(ec2):
    """The default VPC and its default subnets, one per zone."""
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        return None, []
    vpc_id = vpcs[0]["VpcId"]
    subnets = _paginate(ec2, "describe_subnets", "Subnets", Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "default-for-az", "Values": ["true"]}])
    return {"id": vpc_id}, sorted(({"id": s["SubnetId"], "zone": s["AvailabilityZone"]} for s in subnets),
                                  key=lambda s: s["zone"])


def read_offerings(ec2, instance_types):
    """{type: [zones that offer it]} for each type asked about (a type no zone offers maps to [])."""
    offerings = {t: [] for t in instance_types}
    if not instance_types:
        return offerings
    found = _paginate(ec2, "describe_instance_type_offerings", "InstanceTypeOfferings",
                      LocationType="availability-zone",
                      Filters=[{"Name": "instance-type", "Values": sorted(set(instance_types))}])
    for offering in found:
        offerings.setdefault(offering["InstanceType"], []).append(offering["Location"])
    return {t: sorted(set(z)) for t, z in offerings.items()}


def read_parameters(ssm, names):
    """({parameter: AMI id}, {parameter: why it could not be read}) from the public SSM parameters."""
    if not names:
        return {}, {}
    answer = ssm.get_parameters(Names=sorted(set(names)))
    values = {p["Name"]: p["Value"] for p in answer.get("Parameters", [])}
    missing = {n: "ParameterNotFound: no such parameter in this region" for n in answer.get("InvalidParameters", [])}
    return values, missing


def read_images(ec2, image_ids):
    """{AMI id: its architecture, root device and state}; an AMI that does not exist is left out."""
    images = {}
    for image_id in sorted(set(i for i in image_ids if i)):
        try:
            answer = ec2.describe_images(ImageIds=[image_id])["Images"]
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code", "").startswith("InvalidAMIID"):
                continue
            raise
        for image in answer:
            images[image["ImageId"]] = {"architecture": image.get("Architecture", ""), "state": image.get("State", ""),
                                        "root_device_name": image.get("RootDeviceName", ""), "name": image.get("Name", ""),
                                        "tags": tags_dict(image.get("Tags"))}
    return images


def _image_filters(owner, name=None):
    filters = _tag_filters(name)
    filters += [{"Name": f"tag:{identity.ROLE}", "Values": ["image"]},
                {"Name": f"tag:{identity.OWNER}", "Values": [identity.escape_filter_value(owner)]}]
    return filters


def read_baked_images(ec2, owner, name=None):
    """The gpubox images of this account that carry `owner`'s tags (of box `name`, when given): those bake.yml made."""
    images = []
    for image in _paginate(ec2, "describe_images", "Images", Owners=["self"], Filters=_image_filters(owner, name)):
        tags = tags_dict(image.get("Tags"))
        # Exact tags again, as for every resource: an emulator or a future API that matched loosely must not widen it.
        if not identity.is_gpubox(tags, name) or tags.get(identity.ROLE) != "image" or tags.get(identity.OWNER) != owner:
            continue
        snapshots = [{"id": m["Ebs"]["SnapshotId"], "size": m["Ebs"].get("VolumeSize", 0), "device": m.get("DeviceName", "")}
                     for m in image.get("BlockDeviceMappings", []) if (m.get("Ebs") or {}).get("SnapshotId")]
        root = image.get("RootDeviceName", "")
        # The root snapshot's size: a box launched from the image needs a root disk at least that large.
        root_size = next((s["size"] for s in snapshots if s["device"] == root), 0)
        images.append({"id": image["ImageId"], "name": image.get("Name", ""), "state": image.get("State", ""),
                       "architecture": image.get("Architecture", ""), "created": image.get("CreationDate", ""),
                       "root_device_name": root, "root_size": root_size, "tags": tags, "snapshots": snapshots})
    return sorted(images, key=lambda i: i["id"])


def read_snapshots(ec2, owner):
    """{snapshot id: its size, tags, state and description} of the gpubox snapshots with `owner`'s tags (an image's
    are deleted with it only when they carry them; those of no registered image are listed as left over)."""
    filters = _tag_filters() + [{"Name": f"tag:{identity.OWNER}", "Values": [identity.escape_filter_value(owner)]}]
    snapshots = {}
    for snapshot in _paginate(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters):
        tags = tags_dict(snapshot.get("Tags"))
        if identity.is_gpubox(tags) and tags.get(identity.OWNER) == owner:
            snapshots[snapshot["SnapshotId"]] = {"size": snapshot.get("VolumeSize", 0), "tags": tags,
                                                 "state": snapshot.get("State", ""),
                                                 "description": snapshot.get("Description", "")}
    return snapshots


def read_quota(quotas, code):
    """{value, error}: the quota in vCPUs, or None and why it could not be read."""
    try:
        answer = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)
    except botocore.exceptions.ClientError as e:
        error = e.response.get("Error", {})
        return {"value": None, "error": f"{error.get('Code', 'Error')}: {error.get('Message', str(e))}"}
    except botocore.exceptions.BotoCoreError as e:
        return {"value": None, "error": str(e)}
    return {"value": float(answer["Quota"]["Value"]), "error": ""}


def running_vcpus(ec2, patterns, spot_patterns=None):
    """{quota code: vCPUs of pending and running instances whose family matches the code's pattern}: spot
    instances count against the spot codes (spot_patterns), the others against the on-demand codes (patterns)."""
    compiled = {code: re.compile(pattern) for code, pattern in patterns.items()}
    spot = {code: re.compile(pattern) for code, pattern in (spot_patterns or {}).items()}
    used = {code: 0 for code in list(patterns) + list(spot)}
    reservations = _paginate(ec2, "describe_instances", "Reservations",
                             Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    for r in reservations:
        for instance in r["Instances"]:
            family = instance["InstanceType"].split(".")[0]
            cpu = instance.get("CpuOptions", {})
            codes = spot if instance.get("InstanceLifecycle") == "spot" else compiled
            for code, pattern in codes.items():
                if pattern.match(family):
                    used[code] += cpu.get("CoreCount", 1) * cpu.get("ThreadsPerCore", 1)
    return used


def read_spot_prices(ec2, types, now):
    """{type: {zone: the current spot price in USD/h, as AWS states it}} of Linux instances."""
    if not types:
        return {}
    answer = _paginate(ec2, "describe_spot_price_history", "SpotPriceHistory", InstanceTypes=sorted(set(types)),
                       ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"], StartTime=now)
    prices, stamps = {}, {}
    for entry in answer:
        where = (entry["InstanceType"], entry["AvailabilityZone"])
        stamp = str(entry.get("Timestamp", ""))
        if stamp >= stamps.get(where, ""):
            stamps[where] = stamp
            prices.setdefault(where[0], {})[where[1]] = entry["SpotPrice"]
    return prices


def read_spot_requests(ec2, name, instance_ids):
    """The spot requests still alive of box `name` (by its exact tags, whoever's: the planner keeps its owner's) or
    of its instances: [{id, instance_id, state, tags}]. A persistent request launches a new instance when its
    instance is terminated, and one whose instance is gone waits to launch one: teardown cancels them first."""
    requests = _paginate(ec2, "describe_spot_instance_requests", "SpotInstanceRequests",
                         Filters=[{"Name": "state", "Values": ["open", "active", "disabled"]}])
    found = []
    for r in requests:
        tags = tags_dict(r.get("Tags"))
        if identity.is_gpubox(tags, name) or r.get("InstanceId") in instance_ids:
            found.append({"id": r["SpotInstanceRequestId"], "instance_id": r.get("InstanceId", ""),
                          "state": r.get("State", ""), "tags": tags})
    return sorted(found, key=lambda r: r["id"])


def _spot_instances(found):
    return [i for i in found.get("instances", []) if i.get("instance_lifecycle") == "spot"
            and i["state"]["name"] in identity.LIVE_STATES]


def _needs_quota(instances, wanted_types):
    """A launch needs vCPUs unless the box already runs with a type asked for."""
    live = [i for i in instances if i["state"]["name"] in ("pending", "running")]
    types = catalog.type_list(wanted_types)
    return not live or any(types and i["instance_type"] not in types for i in live)


def gather(client, args, families, quota_groups, now=None):
    """What exists, for args['action'] (READS). client(service) returns a boto3 client; the catalog's instance
    families and quota groups say which offerings and quotas a launch needs."""
    action = args["action"]
    name = args.get("name") or None
    if action == "find" and not name:
        action = "find_all"
    reads = READS[action]
    if args.get("adopt") and name:  # adopting claims every resource of the box, not only those the command uses
        reads = reads + ("volumes", "security_groups", "key_pairs")
    found = {"action": args["action"], "name": name or "", "region": args.get("region", ""), "errors": [],
             "now": (now or datetime.datetime.now(datetime.timezone.utc)).isoformat()}

    def attempt(what, read):
        try:
            return read()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            code = e.response.get("Error", {}).get("Code", "") if hasattr(e, "response") else type(e).__name__
            found["errors"].append({"read": what, "code": code, "message": str(e)})
            return None

    caller = attempt("caller", lambda: client("sts").get_caller_identity())
    if caller is None:
        return found
    found["caller"] = {"user_id": caller["UserId"], "arn": caller["Arn"], "account": caller["Account"]}
    # A name that is not a box name is never sent to AWS (the planner refuses it).
    if name and identity.name_problem(name):
        return found

    ec2 = client("ec2")
    if "all_instances" in reads:
        found["instances"] = attempt("instances", lambda: read_instances(ec2, states=identity.LIVE_STATES)) or []
    if "instances" in reads:
        found["instances"] = attempt("instances", lambda: read_instances(ec2, name)) or []
    if "volumes" in reads:
        found["volumes"] = attempt("volumes", lambda: read_volumes(ec2, name)) or []
    # Baked images, always the caller's own: a teardown says what the box's cost (and removes them with
    # delete_images=true); a launch with ami=baked picks the newest, when the box has no instance yet.
    owner = found["caller"]["user_id"]
    if action == "teardown":
        reads = reads + ("baked_images", "snapshots")
    if (action == "launch" and str((args.get("settings") or {}).get("ami")) == "baked"
            and not [i for i in found.get("instances", []) if i["state"]["name"] in identity.LIVE_STATES]):
        reads = reads + ("baked_images",)
    if "baked_images" in reads:
        found["baked_images"] = attempt("baked images", lambda: read_baked_images(
            ec2, owner, name if action in ("bake", "teardown") else None)) or []
    if "snapshots" in reads:
        found["snapshots"] = attempt("snapshots", lambda: read_snapshots(ec2, owner)) or {}
    # teardown -e delete_images=true: every live gpubox instance (as images.yml reads them), so that a box launched
    # from one of the images under another name is said to use it.
    delete_images = str((args.get("settings") or {}).get("delete_images", "")).strip().lower() in (
        "1", "true", "yes", "on", "y")
    if action == "teardown" and delete_images:
        found["live_instances"] = attempt("instances", lambda: read_instances(ec2, states=identity.LIVE_STATES)) or []
    with_users = "users" in reads
    if "security_groups" in reads:
        found["security_groups"] = attempt("security groups", lambda: read_security_groups(ec2, name, with_users)) or []
    if "key_pairs" in reads:
        found["key_pairs"] = attempt("key pairs", lambda: read_key_pairs(ec2, name, with_users)) or []
    if "network" in reads:
        network = attempt("the default VPC and subnets", lambda: read_network(ec2))
        found["vpc"], found["subnets"] = network if network else (None, [])
    if "offerings" in reads:
        types = catalog.offering_candidates(args.get("wanted_type", ""), families, quota_groups)
        types += [i["instance_type"] for i in found.get("instances", []) if i["state"]["name"] in identity.LIVE_STATES]
        found["offerings"] = attempt("instance type offerings", lambda: read_offerings(ec2, types)) or {}
    if "image" in reads and not [i for i in found.get("instances", []) if i["state"]["name"] in identity.LIVE_STATES]:
        parameters = attempt("public SSM parameters", lambda: read_parameters(client("ssm"), args.get("image_parameters")))
        found["parameters"], found["parameter_errors"] = parameters if parameters else ({}, {})
        ids = list(found["parameters"].values()) + list(args.get("image_ids") or [])
        found["images"] = attempt("images", lambda: read_images(ec2, ids)) or {}
    spot = args.get("market") in ("spot", "auto")
    if "quota" in reads and _needs_quota(found.get("instances", []), args.get("wanted_type", "")):
        patterns = catalog.quota_patterns(quota_groups)
        spot_patterns = catalog.quota_patterns(quota_groups, "spot") if spot else {}
        quotas = client("service-quotas")
        found["quotas"] = {code: read_quota(quotas, code) for code in list(patterns) + list(spot_patterns)}
        found["running_vcpus"] = attempt("running instances", lambda: running_vcpus(ec2, patterns, spot_patterns)) or {}
    if "spot_prices" in reads:
        # A launch with market spot or auto: the candidates' prices; otherwise those of the spot boxes found.
        types = ([t for t, zones in found.get("offerings", {}).items() if zones] if action == "launch" and spot
                 else [i["instance_type"] for i in _spot_instances(found)])
        # Only shown, never decided on: a price that cannot be read is a warning, not a refusal.
        try:
            found["spot_prices"] = read_spot_prices(ec2, types, now or datetime.datetime.now(datetime.timezone.utc))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            found["spot_prices"], found["spot_price_error"] = {}, str(e)[:200]
    if "spot_requests" in reads:
        ids = [i["instance_id"] for i in _spot_instances(found)]
        found["spot_requests"] = attempt("spot requests", lambda: read_spot_requests(ec2, name, ids)) or []
    return found
