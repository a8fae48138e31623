"""gpubox's planner: (settings, what the gather found, the catalog) -> the plan.

One pure function decides every command of the AWS half: which resources are the box's (by exact tags and
owner), every refusal (before anything changes), the changes to make in order, and the box record that the
host side receives. No AWS call and no file access happens here, so each case is a table-driven unit test
(tests/unit/test_box_plan.py).

The plan:
  action     the command: launch, stop, start, teardown, find (configure and verify), autostop (autostop.yml)
             or status
  problems   refusals; when there is one, nothing is changed
  notes      what the user should read (a substituted type, a plain image instead of the DLAMI, ...)
  warnings   what gpubox could not check (an unreadable quota)
  changes    the changes to make, in order; empty on a re-run that changes nothing. launch: generate_ssh_key,
             import_key, create_security_group or update_ssh_rule, create_volume, then stop_for_resize, resize and
             start, or start, or wait_running, or run_instance; then attach_volume. stop: stop. start: start or
             wait_running. teardown: terminate, delete_security_group, delete_key, delete_volume. autostop: none (the
             host play changes the box, then its tags)
  adopt      the ids of the box's resources without an owner tag that adopt=true tags with yours
  record     the box record (see box_record); records for find with several boxes
  create     the parameters of each creation (key pair, security group, data volume, instance)
  ...        per change: the ids it acts on (stop_ids, start_ids, terminate_ids, delete_*)
"""

import decimal
import ipaddress
import re
from datetime import datetime, timedelta, timezone

from ansible_collections.gpubox.box.plugins.module_utils import box_catalog as catalog
from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity
from ansible_collections.gpubox.box.plugins.module_utils import box_images

# The data volume's device on the instance (it appears as an NVMe disk whose serial is the volume id).
DATA_DEVICE = "/dev/sdf"
# An SSH source wider than this, with public addresses in it, needs allow_world_ssh.
WIDEST_SSH_PREFIX = {4: 16, 6: 48}
# The longest hold the box's gpubox-autostop takes.
MAX_HOLD_MINUTES = 7 * 24 * 60


# --- Settings that need no AWS answer

def ssh_cidr_problem(cidr, allow_world=False):
    """'' when cidr is a usable SSH source range, else what is wrong and how to fix it."""
    try:
        network = ipaddress.ip_network(str(cidr).strip(), strict=False)
    except ValueError:
        return (
            f"ssh_cidr '{cidr}' is not an IP range. Pass your own address as a /32, "
            "for example -e ssh_cidr=203.0.113.7/32, or leave ssh_cidr unset to detect it."
        )
    if allow_world:
        return ""
    if network.prefixlen == 0:
        return (
            f"ssh_cidr '{cidr}' opens SSH to the whole internet. Use your own address "
            "(-e ssh_cidr=YOUR.IP/32, or leave it unset to detect it), or pass "
            "-e allow_world_ssh=true if you really mean it."
        )
    widest = WIDEST_SSH_PREFIX[network.version]
    if network.prefixlen < widest and not network.is_private:
        return (
            f"ssh_cidr '{cidr}' opens SSH to {network.num_addresses:,} internet addresses; gpubox takes at most a "
            f"/{widest} of public addresses. Use your own address (-e ssh_cidr=YOUR.IP/32, or leave it unset to "
            "detect it) or your network's range, or pass -e allow_world_ssh=true if you really mean it."
        )
    return ""


def normalise_cidr(cidr):
    """The network address form of a CIDR ('203.0.113.7/24' -> '203.0.113.0/24')."""
    return str(ipaddress.ip_network(str(cidr).strip(), strict=False))


def host_cidr(address):
    """A single address as a CIDR: '203.0.113.7' -> '203.0.113.7/32' (IPv6: /128)."""
    ip = ipaddress.ip_address(str(address).strip())
    return f"{ip}/{ip.max_prefixlen}"


AWS_ERROR_CODE = re.compile(r"An error occurred \(([A-Za-z0-9.]+)\)|\b(InsufficientInstanceCapacity|VcpuLimitExceeded|Unsupported)\b")


def aws_error_code(message):
    """The AWS error code in a module's failure message ('' when there is none)."""
    match = AWS_ERROR_CODE.search(str(message or ""))
    return (match.group(1) or match.group(2)) if match else ""


def _as_bool(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y")
    return bool(value)


def _as_int(value, default=0):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def settings_problems(settings, images):
    """Refusals that need no AWS answer (launch's settings)."""
    problems = []
    if settings.get("ssh_cidr"):
        problems.append(ssh_cidr_problem(settings["ssh_cidr"], _as_bool(settings.get("allow_world_ssh"))))
    ami = str(settings.get("ami", "dlami"))
    if not re.match(r"^(dlami|plain|baked|ami-[0-9a-f]{8,17})$", ami):
        problems.append(f"ami '{ami}' is not dlami, plain or an AMI id (ami-0123456789abcdef0), nor baked: pass one of "
                        "those.")
    if settings.get("os") not in images:
        problems.append(f"os '{settings.get('os')}' is not one gpubox knows: pass one of {', '.join(sorted(images))}.")
    if _as_int(settings.get("volume_size"), -1) < 20:
        problems.append(f"volume_size {settings.get('volume_size')} GiB is too small for a deep-learning image: "
                        "use 20 or more (the default is 100).")
    if _as_int(settings.get("data_volume_size"), -1) < 0:
        problems.append(f"data_volume_size {settings.get('data_volume_size')} must be 0 (no data volume) or a size in GiB.")
    market = _market(settings)
    if market not in MARKETS:
        problems.append(f"market '{market}' is not one of {', '.join(MARKETS)}: on-demand (the default) cannot be "
                        "interrupted, spot costs less and may be stopped by AWS, auto tries spot first.")
    price = str(settings.get("max_price") or "").strip()
    if price and not (re.fullmatch(r"[0-9]+(\.[0-9]+)?", price) and float(price) > 0.001):
        problems.append(f"max_price '{price}' is not a price in USD per hour above 0.001: pass for example "
                        "-e max_price=0.60, or leave it out to pay the current spot price (at most the on-demand price).")
    elif price and market == "on-demand":
        problems.append("max_price applies to spot boxes: add -e market=spot (or -e market=auto), or leave max_price out.")
    for setting, least in (("retry_interval", 1), ("retry_timeout", 0)):
        value = settings.get(setting, least)
        if _as_int(value, -1) < least:
            problems.append(f"{setting} '{value}' is not a whole number of seconds of at least {least}.")
    return [p for p in problems if p]


MARKETS = ("on-demand", "spot", "auto")


def _market(settings):
    return str(settings.get("market") or "on-demand").strip().lower()


def autostop_tags(settings):
    """(the auto-stop tags the settings given (non-empty) would be, problem): the planner only checks them (and a
    hold) before anything changes; the host plays write the tags once the box has the settings."""
    tags, problems = {}, []
    minutes = str(settings.get("autostop_minutes", "")).strip()
    if minutes:
        if re.fullmatch(r"[0-9]+", minutes):
            tags[identity.AUTOSTOP_MINUTES] = str(int(minutes))
        else:
            problems.append(f"autostop minutes '{minutes}' is not a whole number of minutes: pass for example 60, "
                            "or 0 to switch the idle stop off.")
    hours = str(settings.get("max_hours", "")).strip()
    if hours:
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", hours):
            tags[identity.MAX_HOURS] = f"{float(hours):g}"
        else:
            problems.append(f"max_hours '{hours}' is not a number of hours: pass for example 8 or 1.5, or 0 for no cap.")
    hold = str(settings.get("hold", "")).strip()
    held = re.fullmatch(r"([0-9]+)|(?=[0-9])(?:([0-9]+)h)?(?:([0-9]+)m(?:in)?)?", hold)
    if hold and hold != "off" and not held:
        problems.append(f"hold '{hold}' is not a duration: pass for example -e hold=3h, 90m or 1h30m, or -e hold=off.")
    elif held and int(held.group(1) or 0) + int(held.group(2) or 0) * 60 + int(held.group(3) or 0) > MAX_HOLD_MINUTES:
        problems.append(f"hold '{hold}' is longer than a week, the longest hold: to switch the idle stop off, pass "
                        "-e minutes=0 instead.")
    return tags, " ".join(problems)


def _autostop_label(tags):
    """The auto-stop setting and the cap as status shows them, from the instance's tags."""
    minutes, hours = tags.get(identity.AUTOSTOP_MINUTES), tags.get(identity.MAX_HOURS)
    idle = "-" if minutes is None else ("off" if minutes == "0" else f"{minutes}m")
    cap = "-" if hours in (None, "0") else f"{hours}h"
    return idle, cap


# --- The box record

def _address(instance):
    return instance.get("public_ip_address") or instance.get("private_ip_address") or ""


def _data_volume_id(instance):
    for mapping in instance.get("block_device_mappings") or []:
        if mapping.get("device_name") == DATA_DEVICE:
            return (mapping.get("ebs") or {}).get("volume_id", "")
    return ""


def box_record(instance, families=None, quota_groups=None):
    """The box record of one instance (as DescribeInstances returns it, in snake_case with a tags dict).

    What the host side receives (add_host, and the aws_ec2 inventory's compose): who and what the box is
    and how to reach it. With the catalog it also carries the GPUs and the price.
    """
    tags = instance.get("tags") or {}
    if identity.name_problem(tags.get(identity.NAME)):
        return {}  # not a box gpubox made: no name to build a host, a path or an SSH option from
    state = instance.get("state") or {}
    record = {
        "name": tags.get(identity.NAME, ""),
        "owner": tags.get(identity.OWNER, ""),
        "owner_arn": tags.get(identity.OWNER_ARN, ""),
        "instance_id": instance.get("instance_id", ""),
        "instance_type": instance.get("instance_type", ""),
        "state": state.get("name", "") if isinstance(state, dict) else str(state),
        "zone": (instance.get("placement") or {}).get("availability_zone", ""),
        "subnet_id": instance.get("subnet_id", ""),
        "vpc_id": instance.get("vpc_id", ""),
        "image_id": tags.get("gpubox:ami") or instance.get("image_id", ""),
        "image": tags.get("gpubox:image", "custom"),
        "os": tags.get("gpubox:os", ""),
        "ssh_user": identity.ssh_user(tags, "ec2-user" if str(tags.get("gpubox:os", "")).startswith("al") else "ubuntu"),
        "public_ip": instance.get("public_ip_address") or "",
        "private_ip": instance.get("private_ip_address") or "",
        "address": _address(instance),
        "key_name": instance.get("key_name") or "",
        "security_group_ids": sorted(g.get("group_id", "") for g in instance.get("security_groups") or []),
        "volume_id": _data_volume_id(instance),
        "generation": _as_int(tags.get(identity.GENERATION), 0),
        "autostop_minutes": tags.get(identity.AUTOSTOP_MINUTES, ""),
        "max_hours": tags.get(identity.MAX_HOURS, ""),
        "launch_time": str(instance.get("launch_time", "")),
        "market": "spot" if _is_spot(instance) else "on-demand",
        "interrupted": _interrupted(instance),
    }
    if families is not None:
        entry = catalog.instance_type(record["instance_type"], families, quota_groups or {})
        record["gpus"] = catalog.gpus_label(entry)
        record["usd_per_hour"] = entry.get("usd_per_hour", "")
    return record


# --- What the gather found, sorted into the box's own and the rest

def _live(instances):
    return [i for i in instances if (i.get("state") or {}).get("name") in identity.LIVE_STATES]


class _Box:
    """Box `name`'s resources (those with its gpubox tags, exact values) of the box's owner, and the others.

    The box's owner is you; with allow_other_owner, the owner of the box's live instance (or, without one, of its
    key pair and security group): one box, one owner, never a mix. With adopt, a resource without an owner tag (an
    older gpubox made it) is yours too. What belongs to anyone else is never touched (a volume of another owner is
    not even looked at); a command with nothing of the owner's to act on says whose the box is instead.
    """

    def __init__(self, found, name, caller, adopt=False, any_owner=False):
        self.name = name
        self.caller = caller
        resource = identity.resource_name(name)

        def box(r):
            return identity.is_gpubox(r.get("tags"), name)

        instances = [i for i in found.get("instances", []) if box(i)]
        self.groups = [g for g in found.get("security_groups", []) if g.get("group_name") == resource]
        self.keys = [k for k in found.get("key_pairs", []) if k.get("name") == resource]
        named = [r for r in self.groups + self.keys if box(r)]

        def owners_of(resources):
            return sorted({r["tags"].get(identity.OWNER, "") for r in resources})

        self.owner = caller.get("user_id", "")
        self.owners = []  # with allow_other_owner: the owners the box's resources are split between
        if any_owner:
            candidates = owners_of(_live(instances)) or owners_of(named)
            self.owners = candidates
            if len(candidates) == 1:
                self.owner = candidates[0]

        def yours(r):
            owner = r["tags"].get(identity.OWNER)
            return owner == self.owner if owner else adopt

        self.instances_all = [i for i in instances if yours(i)]
        self.instances = _live(self.instances_all)
        self.other_instances = [i for i in _live(instances) if not yours(i)]
        volumes = [v for v in found.get("volumes", []) if box(v) and v.get("state") not in ("deleting", "deleted")]
        self.volumes = [v for v in volumes if yours(v)]
        self.data_volumes = [v for v in self.volumes if v["tags"].get(identity.ROLE) == "data"]
        # An older gpubox's data volume: most likely your notebooks, so it is not passed over for a new one.
        self.ownerless_volumes = [v for v in volumes if not v["tags"].get(identity.OWNER) and not adopt]
        self.own_groups = [g for g in self.groups if box(g) and yours(g)]
        # A key pair lets its key's holder in: one without an owner is adopted only when it holds your public key
        # (which launch reads), never blindly.
        self.own_keys = [k for k in self.keys if box(k) and yours(k)
                         and (k["tags"].get(identity.OWNER) or k.get("matches_public_key") is True)]
        self.other_groups = [g for g in self.groups if box(g) and not yours(g)]
        self.other_keys = [k for k in self.keys if box(k) and k not in self.own_keys]
        # Key pairs without an owner that adopt would have claimed but for their public key.
        self.unmatched_keys = [k for k in self.keys if box(k) and adopt and not k["tags"].get(identity.OWNER)
                               and k.get("matches_public_key") is not True]
        # What adopt tags with your owner: the resources of the box that have no owner tag yet.
        self.ownerless = [r for r in self.instances + self.volumes + self.own_groups + self.own_keys
                          if not r["tags"].get(identity.OWNER)]

    def mine(self, action):
        """What of the box's owner `action` could act on."""
        if action in ("launch", "teardown"):
            return self.instances + self.own_groups + self.own_keys + (self.data_volumes if action == "teardown" else [])
        return self.instances

    def others(self, action):
        """Owners other than the box's of what `action` would meet: the box's instances, and for a launch the key
        pair and security group, whose names it needs."""
        resources = self.other_instances + (self.other_groups + self.other_keys if action == "launch" else [])
        return sorted({identity.owner_label(r["tags"]) for r in resources})


def _resource_id(resource):
    return resource.get("instance_id") or resource.get("group_id") or resource.get("id")


def _generation(resources):
    """The generation a new resource gets: one more than any this box has had that is still visible."""
    return max([_as_int((r.get("tags") or {}).get(identity.GENERATION), 0) for r in resources] + [0]) + 1


# --- The planner

def _base(settings):
    return {
        "action": settings.get("action", ""), "problems": [], "notes": [], "warnings": [], "changes": [],
        "record": {}, "records": [], "create": {}, "doomed": [], "kept": [],
        "stop_ids": [], "start_ids": [], "wait_ids": [], "terminate_ids": [],
        "delete_security_group_ids": [], "delete_key_names": [], "delete_volume_ids": [],
        "attach": {}, "resize": {}, "lines": [], "adopt": {}, "cancel_spot_ids": [],
    }


_NO_CREDENTIALS = (
    "No usable AWS credentials ({detail}). Run 'aws configure' (or 'aws sso login --profile NAME' and export "
    "AWS_PROFILE=NAME), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then run this again."
)


def _read_problems(found):
    """Refusals for what the gather could not read."""
    problems = []
    for error in found.get("errors", []):
        detail = " ".join(str(error.get("message", "")).split())[:200]
        if error.get("read") == "caller":
            problems.append(_NO_CREDENTIALS.format(detail=detail))
            break
        code = error.get("code", "")
        hint = (" Attach the policy in docs/iam-policy.json to your IAM user or role."
                if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException") else "")
        problems.append(f"Could not read {error.get('read')} from AWS in {found.get('region', 'the region')}: {detail}.{hint}")
    return problems


def plan(settings, found, families, quota_groups, images):
    """The plan for settings['action'] (see the module docstring)."""
    action = settings.get("action")
    result = _base(settings)
    name = settings.get("name", "")
    nothing = "Nothing was created." if action in ("launch", "bake") else "Nothing was changed."

    if action in ("launch", "autostop"):
        problem = autostop_tags(settings)[1]
        if problem:
            result["problems"].append(f"{problem} {nothing}")
            return result
    if action in ("status",) or (action == "find" and not name):
        pass
    else:
        problem = identity.name_problem(name)
        if problem:
            result["problems"].append(f"{problem} {nothing}")
            return result

    read = _read_problems(found)
    if read:
        result["problems"] = [f"{p} {nothing}" for p in read]
        return result

    caller = found.get("caller") or {}
    if action == "status":
        return _plan_status(result, found, families, quota_groups, caller)
    if identity.GENERATED_SESSION.search(caller.get("user_id", "")):
        result["problems"].append(
            f"Your AWS credentials assume a role with a session name made from the clock ({caller.get('arn')}): each "
            "session, so every run, would be another owner of the box. Give the session a name of your own: "
            "role_session_name = YOUR-NAME in that profile in ~/.aws/config (botocore-session-<time> otherwise), "
            "or your tool's session-name option, then run this again. A box launched under another session is "
            f"another owner's: stop it in the EC2 console if it keeps billing. {nothing}")
        return result
    if action == "find" and not name:
        return _plan_find_all(result, settings, found, families, quota_groups, caller)
    if action == "images":
        return box_images.plan_images(result, settings, found, caller)

    adopt = _as_bool(settings.get("adopt"))
    box = _Box(found, name, caller, adopt=adopt, any_owner=_as_bool(settings.get("allow_other_owner")))
    if len(box.owners) > 1:
        result["problems"].append(
            f"Box '{name}' has resources of several owners ({', '.join(box.owners)}): gpubox will not mix them, even "
            f"with allow_other_owner. Act as one of them. {nothing}")
        return result
    if action == "launch" and box.unmatched_keys:
        result["problems"].append(
            f"Key pair {box.unmatched_keys[0]['name']} holds another public key than yours "
            f"({settings.get('ssh_public_key', '')}): adopting it would let its key's holder into the box, and not you. "
            f"Delete it (aws ec2 delete-key-pair --key-name {box.unmatched_keys[0]['name']}) or leave the name to its "
            f"owner. {nothing}")
        return result
    others = box.others(action)
    # Another owner's box, when nothing of yours is there to act on (or a launch that needs their names).
    if others and (not box.mine(action) or (action == "launch" and (box.other_groups or box.other_keys))):
        ownerless = any(o.startswith("nobody") for o in others)
        result["problems"].append(
            f"Box '{name}' in {found.get('region')} belongs to {', '.join(others)}, not to you "
            f"({caller.get('user_id', '?')}, {caller.get('arn', '?')}). gpubox acts only on your own boxes: choose another "
            "name with -e name=OTHER (ansible-playbook status.yml lists the boxes and their owners), or, to act on it "
            "anyway on purpose, add -e allow_other_owner=true."
            + (" If it is yours from before gpubox tagged owners, -e adopt=true tags it with your owner." if ownerless
               else "") + f" {nothing}")
        return result
    if others:
        result["notes"].append(f"Left alone: instances of box '{name}' that are not yours "
                               f"({', '.join(sorted(i['instance_id'] for i in box.other_instances))}, owner "
                               f"{', '.join(others)}).")
    if action == "launch" and box.ownerless_volumes:
        ids = ", ".join(v["id"] for v in box.ownerless_volumes)
        result["problems"].append(
            f"Box '{name}' has a data volume without an owner tag ({ids}): an older gpubox made it, and it may hold your "
            "notebooks. -e adopt=true makes it yours and attaches it; if it is not yours, leave the name to its owner "
            f"(-e name=OTHER). {nothing}")
        return result
    if box.ownerless:
        result["adopt"] = {"ids": sorted(_resource_id(r) for r in box.ownerless),
                           "tags": {identity.OWNER: caller.get("user_id", ""), identity.OWNER_ARN: caller.get("arn", "")}}

    planner = {"bake": _plan_bake, "launch": _plan_launch, "stop": _plan_stop, "start": _plan_start,
               "teardown": _plan_teardown, "find": _plan_find, "autostop": _plan_autostop}[action]
    result = planner(result, settings, found, box, families, quota_groups, images)
    for record in [result["record"]] + result["records"]:
        if record and "spot_price" not in record:
            _add_spot_price(record, found)
    result["warnings"] = list(dict.fromkeys(result["warnings"]))
    return result


def _no_box(name, region):
    return (f"There is no box named '{name}' in {region}. 'ansible-playbook status.yml' lists your boxes; "
            "pass one with -e name=NAME, or set AWS_REGION to the region you launched it in.")


def _ambiguous(box, region):
    ids = ", ".join(sorted(i["instance_id"] for i in box.instances))
    return (f"Box '{box.name}' has {len(box.instances)} instances in {region} ({ids}), where it should have one: gpubox "
            f"will not pick one. Remove the extra ones with ansible-playbook teardown.yml -e name={box.name} (it lists "
            "each one before removing anything), or terminate the one you do not want in the EC2 console.")


def _record(instance, families, quota_groups):
    return box_record(instance, families, quota_groups) if instance else {}


# --- stop, start, find, status

def _plan_stop(result, settings, found, box, families, quota_groups, images):
    region = found.get("region")
    if not box.instances:
        result["problems"].append(f"{_no_box(box.name, region)} Nothing was changed.")
        return result
    result["stop_ids"] = sorted(i["instance_id"] for i in box.instances if i["state"]["name"] in ("pending", "running"))
    if result["stop_ids"]:
        result["changes"].append("stop")
    billed = sum(_as_int(v.get("size")) for v in box.volumes)
    result["billed_gib"] = billed
    result["record"] = _record(sorted(box.instances, key=lambda i: i["instance_id"])[0], families, quota_groups)
    return result


def _plan_start(result, settings, found, box, families, quota_groups, images):
    region = found.get("region")
    if not box.instances:
        result["problems"].append(f"{_no_box(box.name, region)} Nothing was changed.")
        return result
    if len(box.instances) > 1:
        result["problems"].append(f"{_ambiguous(box, region)} Nothing was changed.")
        return result
    instance = box.instances[0]
    state = instance["state"]["name"]
    if state == "stopping":
        result["problems"].append(f"Box '{box.name}' is still stopping: wait a minute, then run start.yml again. "
                                  "Nothing was changed.")
        return result
    if state == "stopped" and _interrupted(instance):
        result["problems"].append(_interrupted_problem(box, instance))
        return result
    if state == "stopped":
        result["changes"].append("start")
        result["start_ids"] = [instance["instance_id"]]
    elif state == "pending":
        result["changes"].append("wait_running")
        result["wait_ids"] = [instance["instance_id"]]
    result["record"] = _record(instance, families, quota_groups)
    return result


def _plan_find(result, settings, found, box, families, quota_groups, images):
    """configure and verify: the running box named, as a record for the host plays."""
    region = found.get("region")
    if len(box.instances) > 1:
        result["problems"].append(f"{_ambiguous(box, region)} Nothing was changed.")
        return result
    running = [i for i in box.instances if i["state"]["name"] == "running"]
    if not running:
        result["problems"].append(
            f"Box '{box.name}' is not running (or does not exist in {region}): start it with "
            f"ansible-playbook start.yml -e name={box.name}, or list your boxes with ansible-playbook status.yml. "
            "Nothing was changed.")
        return result
    result["record"] = _record(running[0], families, quota_groups)
    if not result["record"]["volume_id"] and box.data_volumes:
        # Not attached (an interrupted launch): the data_volume role then waits for it and says so, rather than
        # putting the notebooks on the root disk.
        result["record"]["volume_id"] = box.data_volumes[0]["id"]
    result["records"] = [result["record"]]
    return result


def _plan_autostop(result, settings, found, box, families, quota_groups, images):
    """autostop.yml: the running box whose auto-stop changes, as a record for the host play (which changes the box,
    then the tags status.yml shows, once the box has the settings)."""
    wanted = autostop_tags(settings)[0]
    if not wanted and not str(settings.get("hold", "")).strip():
        result["problems"].append(
            "Say what to change: -e minutes=120 (idle minutes; 0 switches the idle stop off), -e max_hours=8 (0: no "
            "cap), or -e hold=3h (no idle stop for that long; -e hold=off ends it). Nothing was changed.")
        return result
    return _plan_find(result, settings, found, box, families, quota_groups, images)


def _plan_find_all(result, settings, found, families, quota_groups, caller):
    """configure and verify without a name: your one running box, or all of them with all_boxes=true."""
    mine = [i for i in _live(found.get("instances", []))
            if identity.is_gpubox(i.get("tags")) and i["tags"].get(identity.OWNER) == caller.get("user_id")
            and not identity.name_problem(i["tags"].get(identity.NAME))]
    running = sorted((i for i in mine if i["state"]["name"] == "running"), key=lambda i: i["tags"].get(identity.NAME, ""))
    names = [i["tags"].get(identity.NAME, "?") for i in running]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        result["problems"].append(
            f"Box '{twice[0]}' has several running instances: gpubox will not pick one. Configure it by name after "
            f"removing the extra ones (ansible-playbook teardown.yml -e name={twice[0]} lists each one). Nothing was changed.")
    elif not running:
        result["problems"].append(
            f"You have no running box in {found.get('region')}: launch one with ansible-playbook launch.yml, start one "
            "with ansible-playbook start.yml -e name=NAME, or configure a machine of your own with -i HOST,. "
            "Nothing was changed.")
    elif len(running) > 1 and not _as_bool(settings.get("all_boxes")):
        result["problems"].append(
            f"You have {len(running)} running boxes in {found.get('region')} ({', '.join(names)}): pick one with "
            "-e name=NAME, or pass -e all_boxes=true to act on every one of them. Nothing was changed.")
    else:
        result["records"] = [_record(i, families, quota_groups) for i in running]
        result["record"] = result["records"][0] if len(running) == 1 else {}
    return result


def _owner_short(tags):
    """The owner in a table: the enforced user id, after the user name of the ARN its creator wrote; else nobody."""
    if not tags.get(identity.OWNER):
        return "nobody"
    name = (tags.get(identity.OWNER_ARN) or "").rsplit("/", 1)[-1]
    return f"{name} ({tags[identity.OWNER]})" if name else tags[identity.OWNER]


def status_lines(instances, families, quota_groups, now, caller=None, spot_prices=None):
    """Lines of a table of gpubox boxes: name, owner, type, GPUs, market, state, public IP, uptime, estimated $/h
    on demand and the current spot price of a spot box, and the auto-stop setting and cap from the tags launch and
    autostop.yml keep current ("-": no tag, an older box)."""
    caller, spot_prices = caller or {}, spot_prices or {}
    header = ("NAME", "OWNER", "TYPE", "GPUS", "MARKET", "STATE", "PUBLIC IP", "UPTIME", "EST. $/H", "SPOT $/H",
              "AUTO-STOP", "CAP")
    rows = []
    boxes = [i for i in _live(instances) if identity.is_gpubox(i.get("tags"))
             and not identity.name_problem(i["tags"].get(identity.NAME))]
    for inst in sorted(boxes, key=lambda i: (i["tags"].get(identity.NAME, ""), i.get("instance_id", ""))):
        entry = catalog.instance_type(inst["instance_type"], families, quota_groups)
        state = inst["state"]["name"]
        running = state in ("pending", "running")
        owner = inst["tags"].get(identity.OWNER)
        spot = _is_spot(inst)
        price = spot_prices.get(inst["instance_type"], {}).get((inst.get("placement") or {}).get("availability_zone"))
        rows.append((
            inst["tags"].get(identity.NAME, "?"),
            "you" if owner and owner == caller.get("user_id") else _owner_short(inst["tags"]),
            inst["instance_type"],
            f"{entry['gpus']}x {entry['gpu_model'].replace('NVIDIA ', '')}" if entry else "-",
            "spot" if spot else "on-demand",
            f"{state} (interrupted)" if _interrupted(inst) else state,
            inst.get("public_ip_address") or "-",
            _uptime(inst.get("launch_time"), now) if running else "-",
            (f"{entry['usd_per_hour']:.2f}" if entry else "?") if running else "0 (disks only)",
            _usd(price) if spot and price else "-",
            *_autostop_label(inst["tags"]),
        ))
    if not rows:
        return ["No gpubox boxes in this region."]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]


def _utc(stamp):
    moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _uptime(launch_time, now):
    try:
        seconds = int((_utc(now) - _utc(launch_time)).total_seconds())
    except ValueError:
        return "?"
    days, rest = divmod(max(seconds, 0), 86400)
    hours, minutes = divmod(rest // 60, 60)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m"


def _plan_status(result, found, families, quota_groups, caller):
    result["lines"] = status_lines(found.get("instances", []), families, quota_groups, found.get("now", ""), caller,
                                   found.get("spot_prices"))
    if found.get("spot_price_error"):
        result["warnings"].append(f"Could not read spot prices: {found['spot_price_error']}")
    result["records"] = [box_record(i, families, quota_groups) for i in _live(found.get("instances", []))
                         if identity.is_gpubox(i.get("tags"))]
    return result


# --- teardown

def _plan_teardown(result, settings, found, box, families, quota_groups, images):
    delete_data = _as_bool(settings.get("delete_data"))
    instance_ids = sorted(i["instance_id"] for i in box.instances)
    result["terminate_ids"] = instance_ids
    # The spot requests of the box's instances, and the box's own (its exact tags and owner) whose instance is gone.
    requests = {r["instance_id"]: r["id"] for r in found.get("spot_requests", []) if r["instance_id"] in instance_ids}
    orphans = [r["id"] for r in found.get("spot_requests", []) if r["instance_id"] not in instance_ids
               and identity.is_gpubox(r["tags"], box.name) and r["tags"].get(identity.OWNER) == box.owner]
    result["cancel_spot_ids"] = sorted(set(requests.values()) | set(orphans))
    attached = {a.get("instance_id") for v in box.data_volumes for a in v.get("attachments", [])}
    for instance in sorted(box.instances, key=lambda i: i["instance_id"]):
        # Without a data volume attached, the notebooks are on the root disk, which goes with the instance.
        disk = ("" if instance["instance_id"] in attached
                else " and its root disk, where your notebooks are (no data volume is attached to it)")
        request = requests.get(instance["instance_id"])
        spot = f", spot request {request}" if request else ""
        result["doomed"].append(f"instance {instance['instance_id']} ({instance['instance_type']}{spot}){disk}")
    result["doomed"] += [f"spot request {r} (its instance is gone; it would launch another)" for r in sorted(orphans)]
    # The security group and key pair go with the box, unless an instance that is not the box's still uses them.
    for what, resources, field, ids in (("security group", box.own_groups, "group_id", "delete_security_group_ids"),
                                        ("key pair", box.own_keys, "name", "delete_key_names")):
        for resource in resources:
            users = sorted(set(resource.get("used_by", [])) - set(instance_ids))
            if users:
                result["kept"].append(f"Kept {what} {resource[field]}: instances {', '.join(users)} still use it.")
            else:
                result[ids].append(resource[field])
                result["doomed"].append(f"{what} {resource[field]}")
    for resource in box.other_groups + box.other_keys:
        what = f"security group {resource['group_id']}" if "group_id" in resource else f"key pair {resource['name']}"
        result["kept"].append(f"Kept {what}: it is not yours (owner {identity.owner_label(resource['tags'])}).")
    for volume in box.data_volumes:
        if delete_data:
            result["delete_volume_ids"].append(volume["id"])
            result["doomed"].append(f"data volume {volume['id']} ({volume['size']} GiB, your notebooks and data)")
        else:
            held = ("with your notebooks and data" if not instance_ids or attached & set(instance_ids)
                    else "(it was not attached to the box, whose notebooks were on its root disk)")
            result["kept"].append(
                f"Kept data volume {volume['id']} ({volume['size']} GiB, about ${volume['size'] * 0.08:.2f} a month) "
                f"{held}: the next 'ansible-playbook launch.yml -e name={box.name}' attaches it again. "
                f"To delete it: ansible-playbook teardown.yml -e name={box.name} -e delete_data=true")
    for change, ids in (("cancel_spot_requests", result["cancel_spot_ids"]), ("terminate", instance_ids),
                        ("delete_security_group", result["delete_security_group_ids"]),
                        ("delete_key", result["delete_key_names"]), ("delete_volume", result["delete_volume_ids"])):
        if ids:
            result["changes"].append(change)
    box_images.teardown_images(result, settings, found, box)
    if not result["doomed"]:
        result["notes"].append(f"Nothing of box '{box.name}' is left to remove in {found.get('region')}.")
    return result


# --- launch

def _plan_launch(result, settings, found, box, families, quota_groups, images):
    region = found.get("region")
    problems = settings_problems(settings, images)
    if problems:
        result["problems"] = [" ".join(problems) + " Nothing was created."]
        return result
    if len(box.instances) > 1:
        result["problems"].append(f"{_ambiguous(box, region)} Nothing was changed.")
        return result
    instance = box.instances[0] if box.instances else None
    state = instance["state"]["name"] if instance else "absent"
    nothing = "Nothing was changed." if instance else "Nothing was created."

    if len(box.data_volumes) > 1 and not _moved_volume(box):
        ids = ", ".join(v["id"] for v in box.data_volumes)
        result["problems"].append(
            f"Box '{box.name}' has {len(box.data_volumes)} data volumes ({ids}), where it should have one: gpubox will not "
            "pick one. Keep the one with your data and delete the other (aws ec2 delete-volume --volume-id ID), then "
            "run launch again. Nothing was changed.")
        return result

    types = catalog.type_list(settings.get("type"))
    market = _market(settings)
    choices = []
    if instance:
        # The type: the one asked for (the box's own when it is among several asked for), else the box's own. A box
        # that substitute=true launched as another type keeps it when the one asked for is still not offered.
        wanted = instance["instance_type"] if not types or instance["instance_type"] in types else types[0]
        if (instance["instance_type"] != wanted and _as_bool(settings.get("substitute"))
                and not found.get("offerings", {}).get(wanted)):
            wanted = instance["instance_type"]
        spot = _is_spot(instance)
        if instance["instance_type"] != wanted and (spot or not _as_bool(settings.get("resize"))):
            how = ("A spot box's type cannot change (AWS keeps its spot request's type): tear it down (the data volume "
                   f"is kept) and launch again with -e type={wanted}" if spot else
                   "To resize it (it is stopped, changed and started again; disks are kept), run: ansible-playbook "
                   f"launch.yml -e name={box.name} -e type={wanted} -e resize=true")
            result["problems"].append(
                f"Box '{box.name}' already exists as a {instance['instance_type']}, not {wanted}. {how} -- or launch a "
                "second box beside it with -e name=OTHER. Nothing was changed.")
            return result
        if state == "stopping":
            result["problems"].append(f"Box '{box.name}' is stopping: wait a minute, then run launch again. "
                                      "Nothing was changed.")
            return result
        if spot and state == "stopped" and _interrupted(instance):
            result["problems"].append(_interrupted_problem(box, instance))
            return result
        if str(settings.get("market") or "").strip() and market not in ("auto", "spot" if spot else "on-demand"):
            result["notes"].append(
                f"Box '{box.name}' is {'a spot' if spot else 'an on-demand'} box; market={market} applies to a new box: "
                "tear it down (the data volume is kept) and launch again to change it.")

        itype, entry, problem = _choose_type(settings, found, wanted, families, quota_groups, region, box.name)
        if problem:
            result["problems"].append(problem)
            return result
        if itype != wanted:
            result["notes"].append(f"{wanted} is not offered in {region}; launching {itype} instead (substitute=true).")
        image, problem = _choose_image(settings, found, instance, itype, entry, images, region, result["notes"])
        placement = {}
        if not problem:
            placement, problem = _choose_placement(found, box, instance, itype, region)
    else:
        choices, problem = _choose_launches(settings, found, box, types, market, families, quota_groups, images, region,
                                            result)
        placement = {}
        if not problem:
            first = choices[0]
            itype, entry, image = first["type"], first["entry"], first["image"]
            placement = {"vpc_id": found["vpc"]["id"], "zone": first["zone"], "subnet_id": first["subnet_id"]}
    if problem:
        result["problems"].append(problem)
        return result

    problem = _foreign_name_problem(box, placement["vpc_id"], region)
    if problem:
        result["problems"].append(problem)
        return result

    cidr, problem = _ssh_source(settings, found)
    if problem:
        result["problems"].append(problem)
        return result

    public_key = found.get("public_key") or {}
    if public_key.get("exists") and not public_key.get("valid"):
        result["problems"].append(
            f"ssh_public_key {public_key.get('path')} is not an SSH public key: pass the .pub file (one line that starts "
            "with ssh-ed25519, ssh-rsa or ecdsa-sha2-...), never the private key. Nothing was created.")
        return result
    if public_key.get("exists") and not found.get("private_key_exists", True):
        result["problems"].append(
            f"ssh_public_key {public_key.get('path')} has no private key beside it ({settings.get('ssh_private_key')}), "
            "which gpubox logs in with: pass its path with -e ssh_private_key=PATH, or move the .pub away to have a new "
            "pair made. Nothing was created.")
        return result
    for key in box.own_keys:
        if key.get("matches_public_key") is False:
            result["warnings"].append(
                f"Key pair {key['name']} holds another public key than {public_key.get('path')}: the box lets in the key "
                "it was launched with. To change the key, tear the box down (the data volume is kept) and launch again.")
    resizing = bool(instance) and instance["instance_type"] != itype
    # A new box's quota was checked per type and market (_choose_launches).
    needs_vcpus = entry and instance and (state not in ("pending", "running") or resizing)
    if needs_vcpus:
        problem = _quota_problem(found, instance, state, entry, itype, families, quota_groups, region, result["warnings"])
        if problem:
            result["problems"].append(problem)
            return result

    caller = found.get("caller") or {}
    # What gpubox creates is the box's owner's: the caller's, or with allow_other_owner the owner of what is there.
    owner = box.owner or caller.get("user_id", "")
    owner_arn = caller.get("arn", "") if owner == caller.get("user_id") else next(
        (r["tags"].get(identity.OWNER_ARN) for r in box.instances + box.own_groups + box.own_keys + box.volumes
         if r["tags"].get(identity.OWNER) == owner and r["tags"].get(identity.OWNER_ARN)), "")
    tags = identity.box_tags(box.name, owner, owner_arn)
    resource = identity.resource_name(box.name)
    changes, create = result["changes"], result["create"]

    # SSH access: the key pair and the security group with its one rule.
    if not (found.get("public_key") or {}).get("exists"):
        changes.append("generate_ssh_key")
    if not box.own_keys:
        changes.append("import_key")
        create["key"] = {"token": {"owner": owner, "name": box.name, "resource": "key-pair", "generation": 0},
                         "params": {"KeyName": resource, "TagSpecifications": [
                             {"ResourceType": "key-pair", "Tags": _tag_list(tags)}]}}
    group = {"name": resource, "rules": [_rule(cidr)],
             "description": f"gpubox {box.name}: SSH from one address; Jupyter is reached through the SSH tunnel"}
    if not box.own_groups:
        changes.append("create_security_group")
        create["security_group"] = {
            "token": {"owner": owner, "name": box.name, "resource": "security-group", "generation": 0},
            "params": {"GroupName": resource, "Description": group["description"], "VpcId": placement["vpc_id"],
                       "TagSpecifications": [{"ResourceType": "security-group", "Tags": _tag_list(tags)}]},
            "ingress": [_permission(cidr)],
        }
    elif not _rules_match(box.own_groups[0], cidr):
        changes.append("update_ssh_rule")
        create["security_group"] = {**group, "group_id": box.own_groups[0]["group_id"],
                                    "vpc_id": box.own_groups[0]["vpc_id"]}

    # The instance's group, and the salt of the tokens: a teardown deletes it, so a box launched again after a
    # teardown meets none of its earlier, spent tokens. "new": the one this run makes.
    create["security_group_id"] = box.own_groups[0]["group_id"] if box.own_groups else "new"

    # The data volume: kept across teardowns, in the box's zone. A new one goes where the instance is (a new
    # instance's zone is known once it runs: the apply fills it in).
    volume = _box_volume(box)
    moved = _moved_volume(box)
    data_size = _as_int(settings.get("data_volume_size"))
    volume_tags = {**tags, "Name": f"{resource}-data", identity.ROLE: "data"}
    if data_size > 0 and volume is None:
        changes.append("create_volume")
        create["volume"] = {
            "token": {"owner": owner, "name": box.name, "resource": "data-volume", "generation": _generation(box.volumes)},
            "params": {
                "AvailabilityZone": placement["zone"] if instance else "", "Size": data_size, "VolumeType": "gp3",
                "Encrypted": True,
                # AWS's default, said outright: one instance at a time (and the emulator then reports it).
                "MultiAttachEnabled": False,
                "TagSpecifications": [{"ResourceType": "volume", "Tags": _tag_list(volume_tags)}],
            },
        }
    elif volume and not moved and _as_bool(settings.get("move_data")) and (
            not instance or volume["zone"] != placement["zone"]):
        # move_data: when the instance runs in another zone than the volume, a copy made from a snapshot replaces it
        # (the copy names the original in gpubox:moved-from; the original is deleted once the copy is attached).
        changes.append("move_volume")
        create["move"] = {
            "volume_id": volume["id"], "zone": volume["zone"],
            "snapshot_tags": {**tags, identity.ROLE: "data-move", "Name": f"{resource}-data-move"},
            "token": {"owner": owner, "name": box.name, "resource": "data-volume", "generation": _generation(box.volumes)},
            "params": {
                "AvailabilityZone": placement["zone"] if instance else "", "VolumeType": volume.get("type") or "gp3",
                "Encrypted": True, "MultiAttachEnabled": False,
                "TagSpecifications": [{"ResourceType": "volume", "Tags": _tag_list({
                    **volume_tags, identity.MOVED_FROM: volume["id"]})}],
            },
        }
    if moved and moved[1].get("attachments"):
        result["notes"].append(f"Kept data volume {moved[1]['id']}, which {moved[0]['id']} was copied from: it is attached "
                               f"to {', '.join(a['instance_id'] for a in moved[1]['attachments'])}. Delete it yourself "
                               "once you no longer need it.")
    elif moved:
        # A move that an earlier run did not finish: the copy is the box's volume; the original goes once it is attached.
        changes.append("finish_move")
        result["delete_volume_ids"] = [moved[1]["id"]]

    # The instance: resize, start, or launch.
    if instance and resizing:
        if state in ("pending", "running"):
            changes.append("stop_for_resize")
        changes.append("resize")
        result["resize"] = {"instance_id": instance["instance_id"], "instance_type": itype}
        changes.append("start")
        result["start_ids"] = [instance["instance_id"]]
    elif instance and state == "stopped":
        changes.append("start")
        result["start_ids"] = [instance["instance_id"]]
    elif instance and state == "pending":
        # A run interrupted while the instance started: wait for it to run, and for its public address.
        changes.append("wait_running")
        result["wait_ids"] = [instance["instance_id"]]
    elif not instance:
        changes.append("run_instance")
        create["instance"] = _instance_creation(settings, box, tags, owner, choices, found.get("now") or "1970-01-01")
        create["instance"]["advice"] = _capacity_advice(settings, box, volume, types, market)
    # A data volume the box has is attached whatever data_volume_size says now: it holds the notebooks.
    if (volume or data_size > 0) and (volume is None or not instance or instance["instance_id"] not in
                                      [a.get("instance_id") for a in volume.get("attachments", [])]):
        changes.append("attach_volume")
        # move_volume: the copy replaces it when the instance runs in another zone (the apply knows).
        result["attach"] = {"volume_id": volume["id"] if volume else "new", "device": DATA_DEVICE}

    problem = _apply_problem(box, instance, volume, changes, owner, caller, placement)
    if problem:
        result["changes"], result["create"], result["attach"] = [], {}, {}
        result["problems"].append(problem)
        return result

    record = _record(instance, families, quota_groups) if instance else {
        "name": box.name, "owner": owner, "owner_arn": owner_arn, "instance_id": "", "state": "absent",
        "instance_type": itype, "zone": placement["zone"], "subnet_id": placement["subnet_id"],
        "vpc_id": placement["vpc_id"], "image_id": image["id"], "image": image["kind"], "os": settings["os"],
        "ssh_user": image["ssh_user"], "address": "", "public_ip": "", "private_ip": "", "key_name": resource,
        "security_group_ids": [g["group_id"] for g in box.own_groups], "volume_id": volume["id"] if volume else "",
        "generation": create.get("instance", {}).get("token", {}).get("generation", 0), "launch_time": "",
        "gpus": catalog.gpus_label(entry), "usd_per_hour": (entry or {}).get("usd_per_hour", ""),
        "market": choices[0]["market"] if choices else "on-demand", "interrupted": False,
    }
    _add_spot_price(record, found)
    if volume and not record.get("volume_id"):
        record["volume_id"] = volume["id"]
    record["instance_type"] = itype
    record["ssh_cidr"] = cidr
    result["record"] = record
    return result


def _apply_problem(box, instance, volume, changes, owner, caller, placement):
    """What the launch's changes would meet that AWS would refuse halfway: said now, before anything changes."""
    nothing = "Nothing was changed." if instance else "Nothing was created."
    created = [c for c in changes if c in ("import_key", "create_security_group", "create_volume", "move_volume",
                                           "run_instance")]
    if created and owner != caller.get("user_id"):
        what = ", ".join(c.replace("_", " ") for c in created)
        return (f"Box '{box.name}' is {owner}'s, and it would need new resources ({what}): gpubox creates only what is "
                "yours (the IAM policy allows nothing else), so allow_other_owner can start, stop, reconfigure and "
                f"tear down another owner's box, not rebuild it. Ask its owner to launch it. {nothing}")
    if volume and "attach_volume" in changes:
        zone = placement["zone"]
        if volume.get("zone") != zone and "move_volume" not in changes:
            return (f"The data volume of box '{box.name}' ({volume['id']}) is in {volume.get('zone')}, but its instance "
                    f"{instance['instance_id'] if instance else ''} is in {zone}: a volume attaches only in its own zone. "
                    f"Copy it to {zone} with -e move_data=true (a snapshot, a new volume there, the old one deleted once "
                    "the new one is attached), or tear the instance down (ansible-playbook teardown.yml keeps the data "
                    f"volume) and launch again, which places the new instance beside the volume. {nothing}")
        held = [a["instance_id"] for a in volume.get("attachments", [])
                if not instance or a.get("instance_id") != instance["instance_id"]]
        if held:
            return (f"The data volume of box '{box.name}' ({volume['id']}) is still attached to {', '.join(held)} "
                    "(an instance shutting down after a teardown lets it go within a few minutes). Wait a minute and "
                    f"run launch again; if it stays attached, detach it in the EC2 console. {nothing}")
    return ""


def _tag_list(tags):
    return [{"Key": k, "Value": str(v)} for k, v in tags.items()]


def _rule(cidr):
    """The one inbound rule, for amazon.aws.ec2_security_group."""
    rule = {"proto": "tcp", "ports": [22], "rule_desc": "SSH from the gpubox user"}
    rule["cidr_ipv6" if ":" in cidr else "cidr_ip"] = cidr
    return rule


def _permission(cidr):
    """The one inbound rule, for AuthorizeSecurityGroupIngress (a new group)."""
    ranges = ({"Ipv6Ranges": [{"CidrIpv6": cidr, "Description": "SSH from the gpubox user"}]} if ":" in cidr
              else {"IpRanges": [{"CidrIp": cidr, "Description": "SSH from the gpubox user"}]})
    return {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **ranges}


def _rules_match(group, cidr):
    """True when the group's only inbound rule is SSH from cidr."""
    ingress = group.get("ingress", [])
    if len(ingress) != 1:
        return False
    rule = ingress[0]
    ranges = sorted(rule.get("cidrs", []) + rule.get("ipv6_cidrs", []))
    return (rule.get("protocol") == "tcp" and rule.get("from_port") == 22 and rule.get("to_port") == 22
            and ranges == [cidr] and not rule.get("other"))


def _choose_type(settings, found, wanted, families, quota_groups, region, name):
    """(type, catalog entry, problem)."""
    entry = catalog.instance_type(wanted, families, quota_groups)
    if not entry and not _as_bool(settings.get("allow_non_gpu")):
        near = catalog.nearest_instance_types(wanted, families)
        hint = f"Did you mean {', '.join(near)}? " if near else ""
        return wanted, entry, (
            f"'{wanted}' is not a GPU instance type gpubox knows. {hint}See catalog/instance_types.yml for all of them, "
            "or pass -e allow_non_gpu=true to launch a type without a GPU. Nothing was created.")
    if entry and entry["gpu_vendor"] != "nvidia":
        return wanted, entry, (
            f"{wanted} has {entry['gpu_model']} GPUs; gpubox installs NVIDIA's driver, CUDA and CUDA builds of "
            "TensorFlow, which do not run on them. Pick an NVIDIA type such as g4dn.xlarge or g5.xlarge. Nothing was created.")
    offerings = found.get("offerings", {})
    if offerings.get(wanted):
        return wanted, entry, ""
    alternatives = catalog.current_alternatives(wanted, families, quota_groups)
    if not _as_bool(settings.get("substitute")):
        if entry.get("status") == "legacy":
            what = f"is retired: EC2 no longer offers it in {region} ({entry.get('gpu_model', '')})."
        else:
            what = f"is not offered in {region}."
        listed = "; ".join(
            f"{a['type']} ({a['gpus']}x {a['gpu_model']}, {a['gpu_memory_gib_total']} GiB GPU memory, "
            f"{a['fp32_tflops']} FP32 TFLOP/s, about ${a['usd_per_hour']}/h)" for a in alternatives)
        run = (f" Run instead: ansible-playbook launch.yml -e name={name} -e type={alternatives[0]['type']} "
               "(or add -e substitute=true to take the nearest offered one).") if alternatives else ""
        return wanted, entry, f"{wanted} {what} Nearest current types: {listed}.{run} Nothing was created."
    offered = [a for a in alternatives if offerings.get(a["type"])]
    if not offered:
        return wanted, entry, (
            f"Neither {wanted} nor its nearest current types ({', '.join(a['type'] for a in alternatives)}) are offered "
            f"in {region}. Try another region, for example AWS_REGION=us-west-2. Nothing was created.")
    return offered[0]["type"], offered[0], ""


def _choose_image(settings, found, instance, itype, entry, images, region, notes):
    """({id, kind, root_device, ssh_user}, problem)."""
    os_name = settings["os"]
    os_entry = images[os_name]
    if instance:
        tags = instance.get("tags", {})
        image_id = tags.get("gpubox:ami") or instance.get("image_id", "")
        details = found.get("images", {}).get(image_id, {})
        return {"id": image_id, "kind": tags.get("gpubox:image", "custom"),
                "root_device": details.get("root_device_name") or os_entry["root_device"],
                "ssh_user": identity.ssh_user(tags, os_entry["ssh_user"])}, ""
    ami = settings.get("ami", "dlami")
    if ami == "baked":
        # Your newest gpubox image for the OS (bake.yml): never another owner's.
        baked, problem = box_images.choose_baked_image(found.get("baked_images", []), os_name, "x86_64",
                                                       (found.get("caller") or {}).get("user_id", ""), region)
        if problem:
            return None, problem
        size = _as_int(baked.get("root_size"))
        if size > _as_int(settings.get("volume_size")):
            notes.append(f"The root disk is made {size} GiB, the size of image {baked['id']}'s root snapshot "
                         f"(volume_size is {settings.get('volume_size')}).")
        return {"id": baked["id"], "kind": "baked", "root_device": baked.get("root_device_name") or os_entry["root_device"],
                "ssh_user": os_entry["ssh_user"], "min_size": size}, ""
    source = ami
    if ami == "dlami" and (entry or {}).get("module_flavor", "open") == "proprietary":
        source = "plain"
        notes.append(
            f"{itype} has {entry['gpu_model']} GPUs ({entry['architecture'].capitalize()}), which need NVIDIA's proprietary "
            "driver of branch 580 or older; the current OSS-driver Deep Learning AMIs no longer support them. Launching the "
            f"plain {os_name} AMI instead; configure installs the driver.")
    if source in ("dlami", "plain"):
        parameter = os_entry["ssm"][source]
        image_id = found.get("parameters", {}).get(parameter)
        if not image_id:
            what = ("Deep Learning Base OSS Nvidia Driver GPU AMI" if source == "dlami" else f"plain {os_name} AMI")
            reason = found.get("parameter_errors", {}).get(parameter, "not found")
            also = ", or try -e ami=plain" if ami == "dlami" and source == "dlami" else ""
            return None, (
                f"Could not read the AMI id of the {what} from the public SSM parameter {parameter} in {region} "
                f"({reason}). Pass an AMI id of this region with -e ami=ami-...{also}. Nothing was created.")
        kind = source
    else:
        image_id, kind = ami, "custom"
    details = found.get("images", {}).get(image_id)
    if not details:
        return None, (f"AMI {image_id} cannot be used in {region} (it does not exist there, or is not shared with you). "
                      "Pass -e ami=dlami, -e ami=plain, or an AMI id from this region. Nothing was created.")
    if details.get("architecture", "x86_64") != "x86_64":
        return None, (f"AMI {image_id} is built for {details['architecture']}, but {itype} needs an x86_64 image. "
                      "Pass an x86_64 AMI id, or -e ami=dlami. Nothing was created.")
    baker = (details.get("tags") or {}).get(identity.OWNER)
    if identity.is_gpubox(details.get("tags")) and baker != (found.get("caller") or {}).get("user_id"):
        # A box baked by someone else still lets their SSH keys in (cloud-init adds yours beside them).
        return None, (f"AMI {image_id} is a gpubox image baked by another owner ({identity.owner_label(details['tags'])}): "
                      "the SSH keys of its box's users are in it and would let them into yours. Launch from your own "
                      "image (-e ami=baked, or bake.yml), or -e ami=dlami. Nothing was created.")
    return {"id": image_id, "kind": kind, "root_device": details.get("root_device_name") or os_entry["root_device"],
            "ssh_user": os_entry["ssh_user"]}, ""


def _no_vpc(region, nothing):
    return (f"{region} has no default VPC, which gpubox launches into. Create one with "
            f"'aws ec2 create-default-vpc --region {region}', then run this again. {nothing}")


def _choose_placement(found, box, instance, itype, region):
    """({vpc_id, zone, subnet_id}, problem) of the box's instance: where it lives (a new one: _choose_launches)."""
    vpc = found.get("vpc")
    if not vpc:
        return None, _no_vpc(region, "Nothing was changed.")
    offered = found.get("offerings", {}).get(itype, [])
    zone = instance["placement"]["availability_zone"]
    if instance["instance_type"] != itype and zone not in offered:
        return None, (f"{itype} is not offered in {zone}, where box '{box.name}' lives (it is offered in "
                      f"{', '.join(offered)}). Pick a type offered there, or launch a new box beside it with "
                      "-e name=OTHER. Nothing was changed.")
    return {"vpc_id": instance.get("vpc_id") or vpc["id"], "zone": zone, "subnet_id": instance.get("subnet_id", "")}, ""


def _foreign_name_problem(box, vpc_id, region):
    """A key pair or security group of the box's name that gpubox did not create for this box."""
    resource = identity.resource_name(box.name)
    foreign = []
    if any(not identity.is_gpubox(k.get("tags"), box.name) for k in box.keys):
        foreign.append("A key pair")
    if any(not identity.is_gpubox(g.get("tags"), box.name) and g.get("vpc_id") == vpc_id for g in box.groups):
        foreign.append("A security group")
    if not foreign:
        return ""
    return (f"{' and '.join(foreign)} named {resource} already exists in {region}, and gpubox did not create it (it "
            f"lacks the tags gpubox:managed-by=gpubox and gpubox:name={box.name}). gpubox never changes what it did not "
            "create: choose another box name with -e name=OTHER, or rename or delete it. Nothing was created.")


def _ssh_source(settings, found):
    """(cidr, problem): the range SSH is opened to."""
    if settings.get("ssh_cidr"):
        return normalise_cidr(settings["ssh_cidr"]), ""
    address = found.get("public_ip", "")
    try:
        return host_cidr(address), ""
    except ValueError:
        detail = found.get("public_ip_error") or f"it answered {address[:40]!r}"
        return "", (f"Could not detect your public IP address from {settings.get('ssh_ip_lookup_url', 'the lookup URL')} "
                    f"({detail}). Pass it yourself, for example -e ssh_cidr=203.0.113.7/32 (find it at "
                    "https://checkip.amazonaws.com). Nothing was created.")


def _quota_problem(found, instance, state, entry, itype, families, quota_groups, region, warnings, market="on-demand"):
    prefix = "spot" if market == "spot" else "on_demand"
    code, name = entry[f"{prefix}_code"], entry[f"{prefix}_name"]
    quota = found.get("quotas", {}).get(code, {})
    if quota.get("value") is None:
        warnings.append(
            f"Could not read {name} ({code}): "
            f"{str(quota.get('error') or 'not read').rstrip('.')}. Going on; if the launch fails with VcpuLimitExceeded, "
            "request a quota increase.")
        return ""
    used = _as_int(found.get("running_vcpus", {}).get(code))
    needed = entry["vcpus"]
    if instance and state in ("pending", "running"):
        old = catalog.instance_type(instance["instance_type"], families, quota_groups)
        if old and old.get("quota_group") == entry.get("quota_group"):
            needed -= old["vcpus"]
    available = quota["value"] - used
    if needed <= available:
        return ""
    return (f"{itype} needs {entry['vcpus']} vCPUs, but your quota '{name}' ({code}) "
            f"in {region} is {int(quota['value'])} vCPUs with {used} in use, so {max(int(available), 0)} are available. "
            "New AWS accounts start at 0 for G and P instances. Request an increase (AWS answers within hours to a day): "
            f"aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} "
            f"--desired-value {used + entry['vcpus']} --region {region} -- then run this again. Nothing was created.")


# --- launch: where to try, in what order, and how (capacity failover, spot)

def _is_spot(instance):
    return (instance or {}).get("instance_lifecycle") == "spot"


def _interrupted(instance):
    """True when AWS stopped (or is stopping) the spot instance for its own reasons: price or capacity."""
    return _is_spot(instance) and str((instance.get("state_reason") or {}).get("code", "")).startswith("Server.Spot")


def _interrupted_problem(box, instance):
    zone = (instance.get("placement") or {}).get("availability_zone", "")
    return (f"Box '{box.name}' is a spot box that AWS stopped ({(instance.get('state_reason') or {}).get('message', '')}): "
            f"only AWS starts an interrupted spot box again, by itself, once {instance['instance_type']} spot capacity "
            f"returns in {zone}. Its disks and notebooks are kept; ansible-playbook status.yml shows when it runs. To "
            f"have a GPU now, tear it down (ansible-playbook teardown.yml -e name={box.name}: the data volume is kept, "
            f"{'but not the root disk' if _data_volume_id(instance) else 'but this box has none: its notebooks are on the root disk, which goes with it'}"
            ") and launch it again with -e market=on-demand or other types. Nothing was changed.")


def _moved_volume(box):
    """(copy, original) when an earlier launch copied the box's data volume to another zone and did not finish."""
    if len(box.data_volumes) != 2:
        return None
    for copy in box.data_volumes:
        original = [v for v in box.data_volumes if v is not copy and v["id"] == copy["tags"].get(identity.MOVED_FROM)]
        # Only a copy that gpubox made for the box's owner (its owner tag, which the IAM policy lets only that owner
        # write), made after the original: an ownerless or older volume claiming to be a copy is not one.
        if (original and copy["tags"].get(identity.OWNER) == box.owner
                and str(copy.get("create_time", "")) > str(original[0].get("create_time", ""))):
            return copy, original[0]
    return None


def _box_volume(box):
    """The box's data volume: its one, or the copy of an unfinished move."""
    moved = _moved_volume(box)
    if moved:
        return moved[0]
    return box.data_volumes[0] if box.data_volumes else None


def _zones(found, box, itype, region, move):
    """([(zone, subnet)] where a new instance of itype may go, in order, problem): beside the data volume (and,
    with move_data, then anywhere else); without one, every zone that offers the type and has a default subnet."""
    offered = found.get("offerings", {}).get(itype, [])
    subnets = {s["zone"]: s["id"] for s in found.get("subnets", [])}
    usable = [z for z in sorted(offered) if z in subnets]
    volume = _box_volume(box)
    if volume and not move:
        zone = volume["zone"]
        if zone not in offered:
            return [], (f"The data volume of box '{box.name}' ({volume['id']}) is in {zone}, where {itype} is not "
                        f"offered (it is in {', '.join(offered)}). Pick a type offered in {zone}, or add -e move_data=true "
                        "to copy the volume to a zone that has the type. Nothing was created.")
        if zone not in subnets:
            return [], (f"The default VPC has no default subnet in {zone}, where the box must go (its data volume is "
                        f"there). Create one with 'aws ec2 create-default-subnet --availability-zone {zone} --region "
                        f"{region}', or add -e move_data=true. Nothing was created.")
        return [(zone, subnets[zone])], ""
    if volume:
        usable = sorted(usable, key=lambda z: z != volume["zone"])  # its own zone first: no copy needed there
    if not usable:
        return [], (f"{itype} is offered in {', '.join(offered) or 'no zone'}, but the default VPC has no default "
                    f"subnet there. Create one with 'aws ec2 create-default-subnet --availability-zone "
                    f"{(offered or ['ZONE'])[0]}'. Nothing was created.")
    return [(z, subnets[z]) for z in usable], ""


NOTHING_CREATED = " Nothing was created."


def _choose_launches(settings, found, box, types, market, families, quota_groups, images, region, result):
    """([{type, entry, image, zone, subnet_id, market}] in the order to try them, problem) for a new instance:
    each type in the user's order, each zone of the type in turn; with market=auto, every spot launch before the
    on-demand ones. A type that is not offered, or whose quota is short, is left out with a note; when none is left,
    the refusal says why for each."""
    if not found.get("vpc"):
        return [], _no_vpc(region, "Nothing was created.")
    # A move an earlier run did not finish is finished where its copy is, never moved again.
    move = _as_bool(settings.get("move_data")) and not _moved_volume(box)
    left_out, per_type = [], []
    for wanted in types or [catalog.DEFAULT_TYPE]:
        itype, entry, problem = _choose_type(settings, found, wanted, families, quota_groups, region, box.name)
        if problem and (not entry or entry.get("gpu_vendor") != "nvidia"):
            return [], problem  # a name gpubox does not know (a typo) or a GPU it cannot use: never skipped over
        if not problem and itype in [t[0] for t in per_type]:
            continue
        image = None
        if not problem:
            image, problem = _choose_image(settings, found, None, itype, entry, images, region, result["notes"])
        zones = []
        if not problem:
            zones, problem = _zones(found, box, itype, region, move)
        if problem:
            left_out.append(problem)
            continue
        if itype != wanted:
            result["notes"].append(f"{wanted} is not offered in {region}; launching {itype} instead (substitute=true).")
        per_type.append((itype, entry, image, zones))
    choices = []
    for each in {"on-demand": ["on-demand"], "spot": ["spot"], "auto": ["spot", "on-demand"]}[market]:
        for itype, entry, image, zones in per_type:
            problem = entry and _quota_problem(found, None, "absent", entry, itype, families, quota_groups, region,
                                               result["warnings"], each)
            if problem:
                left_out.append(problem)
                continue
            choices += [{"type": itype, "entry": entry, "image": image, "zone": zone, "subnet_id": subnet,
                         "market": each} for zone, subnet in zones]
    reasons = [p[:-len(NOTHING_CREATED)] if p.endswith(NOTHING_CREATED) else p for p in left_out]
    if not choices:
        return [], " ".join(dict.fromkeys(reasons)) + NOTHING_CREATED
    result["notes"] += [f"Left out: {r}" for r in dict.fromkeys(reasons)]
    return choices, ""


SPOT_REQUEST_DAYS = 365


def _instance_creation(settings, box, tags, owner, choices, now):
    """The instance's creation: its token, and one RunInstances request per launch to try, in order."""
    resource = identity.resource_name(box.name)
    price = str(settings.get("max_price") or "").strip()
    # A persistent request ends after 7 days unless told otherwise, and then the box can no longer be stopped: a year
    # (a whole day, so that runs on the same day ask for the same launch).
    valid_until = (_utc(now).date() + timedelta(days=SPOT_REQUEST_DAYS)).isoformat() + "T00:00:00Z"
    attempts = []
    for choice in choices:
        image = choice["image"]
        instance_tags = {**tags, "Name": resource, "gpubox:ami": image["id"], "gpubox:os": settings["os"],
                         "gpubox:image": image["kind"], "gpubox:ssh-user": image["ssh_user"]}
        specs = [{"ResourceType": "instance", "Tags": _tag_list(instance_tags)},
                 {"ResourceType": "volume", "Tags": _tag_list({**tags, "Name": f"{resource}-root", identity.ROLE: "root"})}]
        params = {
            "ImageId": image["id"], "InstanceType": choice["type"], "KeyName": resource, "SubnetId": choice["subnet_id"],
            "BlockDeviceMappings": [{"DeviceName": image["root_device"], "Ebs": {
                "VolumeSize": max(_as_int(settings.get("volume_size")), image.get("min_size", 0)), "VolumeType": "gp3",
                "Encrypted": True, "DeleteOnTermination": True}}],
            "MetadataOptions": {"HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 2},
            # Auto-stop shuts the OS down: the instance stops (a spot box's persistent request allows it).
            "InstanceInitiatedShutdownBehavior": "stop",
            "TagSpecifications": specs,
        }
        if choice["market"] == "spot":
            # A persistent request that stops the box when AWS needs the capacity back: disks and notebooks are kept,
            # and AWS starts it again when capacity returns. Teardown cancels the request before terminating.
            spot = {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop", "ValidUntil": valid_until}
            if price:
                spot["MaxPrice"] = price
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
            specs.append({"ResourceType": "spot-instances-request", "Tags": _tag_list(tags)})
        attempts.append({"type": choice["type"], "zone": choice["zone"], "market": choice["market"],
                         "label": f"{choice['zone']} {choice['type']} {choice['market']}", "params": params})
    return {"token": {"owner": owner, "name": box.name, "resource": "instance", "generation": _generation(box.instances_all)},
            "params": attempts[0]["params"], "attempts": attempts,
            "retry": {"until_up": _as_bool(settings.get("retry_until_up")),
                      "interval": _as_int(settings.get("retry_interval"), 30),
                      "timeout": _as_int(settings.get("retry_timeout"), 3600)}}


def _add_spot_price(record, found):
    """The current spot price of the record's type in its zone, when the gather read it."""
    price = found.get("spot_prices", {}).get(record.get("instance_type"), {}).get(record.get("zone"))
    record["spot_price"] = _usd(price) if price else ""


def _usd(price):
    """AWS's price string without its trailing zeros ('0.452100' -> '0.4521')."""
    try:
        return format(decimal.Decimal(str(price)).normalize(), "f")
    except decimal.InvalidOperation:
        return str(price)


def _capacity_advice(settings, box, volume, types, market):
    """What to do when AWS refuses every launch tried."""
    advice = []
    if volume and not _as_bool(settings.get("move_data")):
        advice.append(f"The box's data volume {volume['id']} ties it to {volume['zone']}: -e move_data=true copies the "
                      "volume to a zone that has capacity (a snapshot, a new volume there; the old one is deleted once "
                      "the new one is attached).")
    if not _as_bool(settings.get("retry_until_up")):
        advice.append("Add -e retry_until_up=true to try again every 30 s (retry_interval) for up to an hour "
                      "(retry_timeout).")
    if len(types) < 2:
        advice.append("Give several types in order of preference, for example -e type=g6e.xlarge,g6.xlarge,g5.xlarge.")
    if market == "on-demand":
        advice.append("-e market=auto tries spot capacity first, which is often free when on-demand is not.")
    advice.append("Another region may have capacity (AWS_REGION=us-west-2). The box's key pair and security group "
                  f"(free) are kept for the next launch; ansible-playbook teardown.yml -e name={box.name} removes them.")
    return " ".join(advice)


# --- bake (bake.yml): an image of the box's root disk; module_utils/box_images.py names, tags and prices it

def _plan_bake(result, settings, found, box, families, quota_groups, images):
    region = found.get("region")
    caller = found.get("caller") or {}
    nothing = "Nothing was created."
    if not box.instances:
        result["problems"].append(
            f"There is no box named '{box.name}' in {region} to make an image of: launch and configure it first "
            f"(ansible-playbook launch.yml -e name={box.name}), or list your boxes with ansible-playbook status.yml. "
            f"{nothing}")
        return result
    if len(box.instances) > 1:
        result["problems"].append(f"{_ambiguous(box, region)} {nothing}")
        return result
    instance = box.instances[0]
    state = instance["state"]["name"]
    tags = instance.get("tags") or {}
    os_name = tags.get("gpubox:os", "")
    if box.owner != caller.get("user_id"):
        problem = (f"Box '{box.name}' is {identity.owner_label(tags)}'s: gpubox makes images only of your own boxes (the "
                   "IAM policy allows CreateImage only on them). Ask its owner to run bake.yml.")
    elif state not in ("running", "stopped"):
        problem = f"Box '{box.name}' is {state}: wait until it is running or stopped, then run bake.yml again."
    elif os_name not in images:
        problem = (f"Box '{box.name}' does not say which OS it runs (gpubox:os is '{os_name}'), so launch -e ami=baked "
                   "could never pick its image. Launch a box with this gpubox, configure it, and bake that one.")
    else:
        problem = ""
    if problem:
        result["problems"].append(f"{problem} {nothing}")
        return result

    instance_id = instance["instance_id"]
    architecture = instance.get("architecture") or "x86_64"
    root = instance.get("root_device_name") or images[os_name]["root_device"]
    # Only the root disk: every other disk of the instance, the data volume above all, is left out of the image.
    devices = {m.get("device_name") for m in instance.get("block_device_mappings") or []} - {root, None}
    volume = _data_volume_id(instance)
    name = box_images.image_name(box.name, found.get("now"), [i.get("name") for i in found.get("baked_images", [])])
    no_reboot = _as_bool(settings.get("no_reboot"))
    running = state == "running"
    base = {**identity.box_tags(box.name, caller.get("user_id", ""), caller.get("arn", "")), "Name": name,
            identity.ROLE: box_images.ROLE, box_images.OS: os_name, box_images.ARCH: architecture,
            box_images.SOURCE_INSTANCE: instance_id, box_images.BASE_AMI: tags.get("gpubox:ami", ""),
            box_images.BASE_IMAGE: tags.get("gpubox:image", "")}
    lines = [f"Making image {name} of box '{box.name}' ({instance_id}, {os_name}, {architecture}): its root disk only."]
    if volume:
        lines.append(f"Left out: the data volume {volume} ({DATA_DEVICE}, mounted at /data: your notebooks and data). It "
                     "stays with the box; a box launched from the image gets its own.")
    else:
        lines.append(f"Box '{box.name}' has no data volume: the notebooks in its /data are on the root disk, so they go "
                     "into the image.")
    if running and not no_reboot:
        lines.append(f"Box '{box.name}' is running: EC2 reboots it now, so that the image is a consistent copy of its "
                     "disk (a minute or two; running kernels lose their state). -e no_reboot=true keeps it running, at "
                     "the risk of an image without what was not yet written to disk.")
    elif running:
        lines.append(f"Box '{box.name}' keeps running (no_reboot=true): the image may miss what was not yet written to "
                     "disk.")
    else:
        lines.append(f"Box '{box.name}' is stopped: its disk is copied as it is, and it stays stopped.")
    lines.append("Everything on the root disk goes into the image, and to every box launched from it: the files in the "
                 f"login user's home too ({identity.ssh_user(tags, images[os_name]['ssh_user'])}'s ~/.aws credentials, "
                 "git and Hugging Face tokens, shell history, SSH keys and authorized_keys). Remove what should not "
                 "travel before you bake.")
    lines.append("The box's Jupyter token and SSH host keys are on the disk too: a box launched from the image gets new "
                 "ones (configure makes a new token, cloud-init new host keys at its first boot).")
    result["changes"].append("create_image")
    result["bake"] = {
        "name": name, "instance_id": instance_id, "running": running, "no_reboot": no_reboot,
        "os": os_name, "architecture": architecture, "tags": base, "lines": lines,
        "description": f"gpubox box {box.name} ({os_name}, {architecture}) from {instance_id}, root disk only",
        "device_mapping": [{"device_name": d, "no_device": True} for d in sorted(devices | {DATA_DEVICE})],
    }
    result["record"] = _record(instance, families, quota_groups)
    return result


def price_label(record):
    """What a box costs while it runs, as the closing messages say it: the spot price next to the on-demand estimate."""
    usd = (record or {}).get("usd_per_hour")
    on_demand = f"about ${usd}/h" if usd not in (None, "") else ""
    if (record or {}).get("market") != "spot":
        return f"{on_demand} on demand" if on_demand else ""
    spot = f"${record['spot_price']}/h now" if record.get("spot_price") else "the current spot price"
    return f"spot at {spot}" + (f" ({on_demand} on demand)" if on_demand else "")
