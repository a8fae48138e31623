"""The AWS half's planner (gpubox.box's module_utils/box_plan.py), table-driven: what exists -> the plan.

Each case builds what the gather would have found, in the shape it returns, and checks the refusals, the
changes and the box record. No AWS, no Ansible: the planner is a pure function.
"""

from pathlib import Path

import pytest
import yaml

from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity
from ansible_collections.gpubox.box.plugins.module_utils import box_plan as planner

REPO = Path(__file__).resolve().parents[2]

CATALOG = yaml.safe_load((REPO / "catalog/instance_types.yml").read_text())
FAMILIES, QUOTAS = CATALOG["gpubox_instance_families"], CATALOG["gpubox_quota_groups"]
IMAGES = yaml.safe_load((REPO / "roles/ec2_box/vars/main.yml").read_text())["__ec2_box_images"]
ME = {"user_id": "AIDAME", "arn": "arn:aws:iam::123456789012:user/me", "account": "123456789012"}
ALICE = {"user_id": "AIDAALICE", "arn": "arn:aws:iam::123456789012:user/alice", "account": "123456789012"}
UBUNTU_PARAM = IMAGES["ubuntu24.04"]["ssm"]["dlami"]
PLAIN_PARAM = IMAGES["ubuntu24.04"]["ssm"]["plain"]
AMI = "ami-0123456789abcdef0"


def tags(name="lab", owner=ME, **extra):
    return {**identity.box_tags(name, owner["user_id"], owner["arn"]), **extra}


def instance(name="lab", owner=ME, state="running", itype="g5.xlarge", zone="us-east-1a", iid="i-0001", generation=1,
             volume=None, **extra_tags):
    mappings = [{"device_name": "/dev/sda1", "ebs": {"volume_id": "vol-root"}}]
    if volume:
        mappings.append({"device_name": "/dev/sdf", "ebs": {"volume_id": volume}})
    return {
        "instance_id": iid, "instance_type": itype, "state": {"name": state},
        "placement": {"availability_zone": zone}, "subnet_id": "subnet-a", "vpc_id": "vpc-1",
        "image_id": AMI, "public_ip_address": "54.1.2.3" if state == "running" else None,
        "private_ip_address": "172.31.0.5", "key_name": f"gpubox-{name}", "launch_time": "2026-12-01T10:00:00+00:00",
        "security_groups": [{"group_id": "sg-box"}], "block_device_mappings": mappings,
        "tags": tags(name, owner, **{"gpubox:ami": AMI, "gpubox:image": "dlami", "gpubox:os": "ubuntu24.04",
                                     "gpubox:ssh-user": "ubuntu", identity.GENERATION: str(generation),
                                     "Name": f"gpubox-{name}", **extra_tags}),
    }


def volume(name="lab", owner=ME, vid="vol-data", zone="us-east-1a", attached_to=None, role="data", size=50):
    return {"id": vid, "zone": zone, "size": size, "state": "in-use" if attached_to else "available", "type": "gp3",
            "encrypted": True, "attachments": [{"instance_id": attached_to, "device": "/dev/sdf"}] if attached_to else [],
            "tags": tags(name, owner, **{identity.ROLE: role, "Name": f"gpubox-{name}-{role}"})}


def group(name="lab", owner=ME, gid="sg-box", cidr="203.0.113.7/32", own=True, used_by=()):
    return {"group_id": gid, "group_name": f"gpubox-{name}", "vpc_id": "vpc-1", "tags": tags(name, owner) if own else {},
            "ingress": [{"protocol": "tcp", "from_port": 22, "to_port": 22, "cidrs": [cidr], "ipv6_cidrs": [],
                         "other": False}], "used_by": list(used_by)}


def key(name="lab", owner=ME, own=True, used_by=()):
    return {"name": f"gpubox-{name}", "id": "key-1", "fingerprint": "ab", "tags": tags(name, owner) if own else {},
            "used_by": list(used_by)}


def found(**parts):
    """What the gather finds for a launch in us-east-1 with nothing of the box yet, plus `parts`."""
    base = {
        "region": "us-east-1", "errors": [], "caller": ME, "now": "2026-12-01T12:30:00+00:00",
        "instances": [], "volumes": [], "security_groups": [], "key_pairs": [],
        "vpc": {"id": "vpc-1"}, "subnets": [{"id": f"subnet-{z}", "zone": f"us-east-1{z}"} for z in "abcd"],
        "offerings": {"g5.xlarge": ["us-east-1a", "us-east-1b"], "g4dn.xlarge": ["us-east-1a", "us-east-1c"],
                      "g6.xlarge": ["us-east-1b"], "p3dn.24xlarge": ["us-east-1c", "us-east-1d"]},
        "parameters": {UBUNTU_PARAM: AMI, PLAIN_PARAM: "ami-0aaaaaaaaaaaaaaaa"},
        "images": {AMI: {"architecture": "x86_64", "root_device_name": "/dev/sda1"},
                   "ami-0aaaaaaaaaaaaaaaa": {"architecture": "x86_64", "root_device_name": "/dev/sda1"},
                   "ami-0bbbbbbbbbbbbbbbb": {"architecture": "arm64", "root_device_name": "/dev/xvda"}},
        "quotas": {"L-DB2E81BA": {"value": 64.0, "error": ""}, "L-417A185B": {"value": 192.0, "error": ""}},
        "running_vcpus": {"L-DB2E81BA": 0, "L-417A185B": 0},
        "public_key": {"path": "/home/me/.ssh/id_ed25519.pub", "exists": True, "valid": True},
        "public_ip": "198.51.100.23",
    }
    base.update(parts)
    return base


def settings(action="launch", **overrides):
    base = {"action": action, "name": "lab", "type": "", "os": "ubuntu24.04", "ami": "dlami", "volume_size": 100,
            "data_volume_size": 50, "allow_non_gpu": False, "substitute": False, "resize": False,
            "ssh_cidr": "203.0.113.7/32", "allow_world_ssh": False, "allow_other_owner": False, "all_boxes": False,
            "delete_data": False, "ssh_ip_lookup_url": "https://checkip.amazonaws.com"}
    base.update(overrides)
    return base


def plan(action="launch", what=None, **overrides):
    return planner.plan(settings(action, **overrides), what if what is not None else found(), FAMILIES, QUOTAS, IMAGES)


def refused(result, *fragments):
    assert result["problems"], f"expected a refusal, got changes {result['changes']}"
    text = " ".join(result["problems"])
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    assert result["changes"] == []
    return text


# --- Names reach only their own box (finding 1)

@pytest.mark.parametrize("action", ["launch", "stop", "start", "teardown", "find"])
@pytest.mark.parametrize("name", ["x*", "lab?", "*", "My Box", "-x", "a" * 40, "box_1", "UPPER", "lab\\*", "", "abc\n"])
def test_a_name_that_is_not_a_box_name_is_refused_by_every_command(action, name):
    if action == "find" and name == "":
        pytest.skip("find without a name means: your one running box")
    # Even with a box that a wildcard would have matched.
    result = plan(action, found(instances=[instance("x1")]), name=name)
    refused(result, f"name '{name}' is not a valid box name", "-e name=thesis-gpu")


def test_the_gather_never_sends_a_wildcard():
    assert identity.escape_filter_value("x*") == "x\\*"
    assert identity.escape_filter_value("a?b\\") == "a\\?b\\\\"


# --- A box's resources are its own by exact tags, never by Name (finding 2)

def test_a_longer_name_is_another_box_and_its_volumes_are_not_adopted():
    # Box lab-data's data and root volumes: Name tags that start like box lab's.
    others = [volume("lab-data", vid="vol-other-data"), volume("lab-data", vid="vol-other-root", role="root")]
    result = plan(what=found(volumes=others))
    assert "create_volume" in result["changes"]
    assert result["attach"]["volume_id"] == "new"

    gone = plan("teardown", found(volumes=others), delete_data=True)
    assert gone["delete_volume_ids"] == []


def test_only_the_data_volume_is_deleted_never_the_root_volume():
    result = plan("teardown", found(instances=[instance(volume="vol-data")],
                                    volumes=[volume(attached_to="i-0001"), volume(vid="vol-root", role="root")]),
                  delete_data=True)
    assert result["delete_volume_ids"] == ["vol-data"]


# --- One box, one owner (finding 4)

ALICES = "belongs to AIDAALICE (arn:aws:iam::123456789012:user/alice), not to you (AIDAME, arn:aws:iam::123456789012:user/me)"


@pytest.mark.parametrize("action", ["launch", "stop", "start", "teardown", "find"])
def test_a_box_of_another_owner_is_refused_with_the_owner_named(action):
    refused(plan(action, found(instances=[instance(owner=ALICE)])), ALICES, "-e allow_other_owner=true", "status.yml")


@pytest.mark.parametrize("what", ["security_groups", "key_pairs"])
def test_a_launch_refuses_a_name_another_owner_holds(what):
    resource = group(owner=ALICE) if what == "security_groups" else key(owner=ALICE)
    refused(plan("launch", found(**{what: [resource]})), ALICES)
    # Nothing else acts on them: stop finds no box of yours, teardown leaves them be, and says so.
    gone = plan("teardown", found(**{what: [resource]}))
    assert gone["changes"] == [] and "it is not yours (owner AIDAALICE (" in gone["kept"][0]


def test_another_owners_volume_of_the_same_name_is_never_looked_at():
    # A decoy, or another owner's kept volume: your launch makes your own, your teardown does not see it.
    decoy = volume(owner={"user_id": "AIDAEVE", "arn": ME["arn"]})
    result = plan(what=found(volumes=[decoy]))
    assert result["problems"] == [] and "create_volume" in result["changes"]
    assert plan("teardown", found(volumes=[decoy]), delete_data=True)["delete_volume_ids"] == []
    # Its owner-arn tag claims to be yours; the owner that counts (and that IAM enforces) is the user id.
    refused(plan("stop", found(instances=[instance(owner={"user_id": "AIDAEVE", "arn": ME["arn"]})])),
            f"belongs to AIDAEVE ({ME['arn']}), not to you (AIDAME, {ME['arn']})")


def test_a_box_without_an_owner_tag_is_not_taken_for_yours_unless_adopted():
    legacy = instance(volume="vol-data")
    legacy_volume = volume(attached_to="i-0001")
    for resource in (legacy, legacy_volume):
        del resource["tags"][identity.OWNER], resource["tags"][identity.OWNER_ARN]
    old = found(instances=[legacy], volumes=[legacy_volume])
    refused(plan("teardown", old), "belongs to nobody (no gpubox:owner tag: an older gpubox made it)", "-e adopt=true")
    adopted = plan("stop", old, adopt=True)
    assert adopted["problems"] == [] and adopted["changes"] == ["stop"]
    assert adopted["adopt"] == {"ids": ["i-0001", "vol-data"],
                                "tags": {identity.OWNER: "AIDAME", identity.OWNER_ARN: ME["arn"]}}
    # Adopting never takes another owner's box.
    refused(plan("stop", found(instances=[instance(owner=ALICE)]), adopt=True), ALICES)


def test_another_owners_box_can_be_acted_on_on_purpose():
    result = plan("stop", found(instances=[instance(owner=ALICE)]), allow_other_owner=True)
    assert result["problems"] == [] and result["changes"] == ["stop"] and result["adopt"] == {}


@pytest.mark.parametrize("action", ["launch", "stop", "teardown", "find"])
@pytest.mark.parametrize("session", ["botocore-session-1796148867", "1764612000000000000", "aws-go-sdk-1764612000000000000"])
def test_a_session_name_made_from_the_clock_is_refused(action, session):
    caller = {"user_id": f"AROAROLE:{session}", "account": "123456789012",
              "arn": f"arn:aws:sts::123456789012:assumed-role/lab/{session}"}
    refused(plan(action, found(caller=caller)), "a session name made from the clock", "role_session_name = YOUR-NAME",
            "~/.aws/config")


@pytest.mark.parametrize("session", ["me@example.com", "alice", "ci-build-42"])
def test_a_session_name_of_your_own_is_an_owner(session):
    caller = {"user_id": f"AROAROLE:{session}", "account": "123456789012", "arn": "arn:aws:sts::1:assumed-role/x/y"}
    assert plan("launch", found(caller=caller))["problems"] == []


def test_new_resources_carry_the_callers_owner():
    result = plan()
    for spec in result["create"]["instance"]["params"]["TagSpecifications"] + \
            result["create"]["volume"]["params"]["TagSpecifications"]:
        given = {t["Key"]: t["Value"] for t in spec["Tags"]}
        assert given[identity.OWNER] == "AIDAME" and given[identity.OWNER_ARN] == ME["arn"]
        assert given[identity.MANAGED_BY] == "gpubox" and given[identity.NAME] == "lab"
    for what in ("key", "security_group"):
        [spec] = result["create"][what]["params"]["TagSpecifications"]
        assert {t["Key"]: t["Value"] for t in spec["Tags"]}[identity.OWNER] == "AIDAME"


# --- What a launch creates and changes

def test_a_new_box_is_created_whole_and_locked_down():
    result = plan()
    assert result["problems"] == []
    assert result["changes"] == ["import_key", "create_security_group", "create_volume", "run_instance", "attach_volume"]
    params = result["create"]["instance"]["params"]
    assert params["InstanceType"] == "g5.xlarge" and params["ImageId"] == AMI and params["SubnetId"] == "subnet-a"
    assert params["MetadataOptions"]["HttpTokens"] == "required"
    assert params["InstanceInitiatedShutdownBehavior"] == "stop"
    assert params["BlockDeviceMappings"] == [{"DeviceName": "/dev/sda1", "Ebs": {
        "VolumeSize": 100, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}}]
    data = result["create"]["volume"]["params"]
    # A new instance's zone is known once it runs: the apply fills it in.
    assert (data["AvailabilityZone"], data["Size"], data["VolumeType"], data["Encrypted"]) == ("", 50, "gp3", True)
    assert result["create"]["security_group"]["ingress"] == [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [
        {"CidrIp": "203.0.113.7/32", "Description": "SSH from the gpubox user"}]}]
    assert result["create"]["security_group"]["params"]["GroupName"] == "gpubox-lab"
    assert result["create"]["key"]["params"]["KeyName"] == "gpubox-lab"
    record = result["record"]
    assert (record["name"], record["owner"], record["zone"], record["ssh_user"], record["image"]) == \
        ("lab", "AIDAME", "us-east-1a", "ubuntu", "dlami")
    assert (record["gpus"], record["usd_per_hour"]) == ("1x NVIDIA A10G", 1.006)


def test_a_missing_public_key_is_generated_first():
    assert plan(what=found(public_key={"exists": False}))["changes"][0] == "generate_ssh_key"


def test_a_private_key_given_as_the_public_one_is_refused():
    wrong = found(public_key={"path": "/home/me/.ssh/id_ed25519", "exists": True, "valid": False})
    refused(plan(what=wrong), "ssh_public_key /home/me/.ssh/id_ed25519 is not an SSH public key", "never the private key")


def test_a_rerun_of_a_box_as_it_should_be_changes_nothing():
    current = found(instances=[instance(volume="vol-data")], volumes=[volume(attached_to="i-0001")],
                    security_groups=[group()], key_pairs=[key()])
    result = plan(what=current)
    assert (result["problems"], result["changes"]) == ([], [])
    record = result["record"]
    assert (record["instance_id"], record["address"], record["volume_id"]) == ("i-0001", "54.1.2.3", "vol-data")


def test_a_new_address_updates_the_one_ssh_rule():
    current = found(instances=[instance(volume="vol-data")], volumes=[volume(attached_to="i-0001")],
                    security_groups=[group(cidr="192.0.2.1/32")], key_pairs=[key()], public_ip="198.51.100.23")
    result = plan(what=current, ssh_cidr="")
    assert result["changes"] == ["update_ssh_rule"]
    assert result["create"]["security_group"]["group_id"] == "sg-box"
    assert result["create"]["security_group"]["rules"] == [
        {"proto": "tcp", "ports": [22], "cidr_ip": "198.51.100.23/32", "rule_desc": "SSH from the gpubox user"}]


def test_a_stopped_box_is_started_and_a_kept_volume_reattached_in_its_zone():
    stopped = found(instances=[instance(state="stopped", volume="vol-data")], volumes=[volume(attached_to="i-0001")],
                    security_groups=[group()], key_pairs=[key()])
    assert plan(what=stopped)["changes"] == ["start"]

    kept = found(volumes=[volume(zone="us-east-1b")], security_groups=[group()], key_pairs=[key()])
    result = plan(what=kept)
    assert result["changes"] == ["run_instance", "attach_volume"]
    assert result["create"]["instance"]["params"]["SubnetId"] == "subnet-b"
    assert result["attach"] == {"volume_id": "vol-data", "device": "/dev/sdf"}


def test_no_data_volume_when_its_size_is_zero():
    result = plan(data_volume_size=0)
    assert "create_volume" not in result["changes"] and "attach_volume" not in result["changes"]


def test_the_recorded_ami_is_kept_when_latest_moves():
    current = found(instances=[instance(volume="vol-data")], volumes=[volume(attached_to="i-0001")],
                    security_groups=[group()], key_pairs=[key()], parameters={UBUNTU_PARAM: "ami-0ffffffffffffffff"})
    result = plan(what=current)
    assert result["changes"] == [] and result["record"]["image_id"] == AMI


def test_a_new_type_needs_resize_then_stops_changes_and_starts():
    current = found(instances=[instance(volume="vol-data", zone="us-east-1b")],
                    volumes=[volume(attached_to="i-0001", zone="us-east-1b")], security_groups=[group()], key_pairs=[key()])
    refused(plan(what=current, type="g6.xlarge"), "already exists as a g5.xlarge, not g6.xlarge", "-e resize=true",
            "Nothing was changed")
    result = plan(what=current, type="g6.xlarge", resize=True)
    assert result["changes"] == ["stop_for_resize", "resize", "start"]
    assert result["resize"] == {"instance_id": "i-0001", "instance_type": "g6.xlarge"}


def test_a_resize_to_a_type_the_zone_lacks_changes_nothing():
    current = found(instances=[instance(volume="vol-data")], volumes=[volume(attached_to="i-0001")],
                    security_groups=[group()], key_pairs=[key()])
    refused(plan(what=current, type="p3dn.24xlarge", resize=True), "p3dn.24xlarge is not offered in us-east-1a",
            "where box 'lab' lives", "Nothing was changed")


# --- Two runs at once, and a box made again (finding 5)

def test_the_client_token_is_derived_from_owner_name_resource_and_generation():
    token = identity.client_token("AIDAME", "lab", "instance", 1)
    assert token == identity.client_token("AIDAME", "lab", "instance", 1)
    assert len(token) <= 64 and token.isascii()
    others = {identity.client_token("AIDAALICE", "lab", "instance", 1), identity.client_token("AIDAME", "lab2", "instance", 1),
              identity.client_token("AIDAME", "lab", "data-volume", 1), identity.client_token("AIDAME", "lab", "instance", 2)}
    assert token not in others and len(others) == 4


def test_two_runs_that_see_the_same_box_plan_the_same_token():
    first, second = plan(), plan()
    assert first["create"]["instance"]["token"] == second["create"]["instance"]["token"] == \
        {"owner": "AIDAME", "name": "lab", "resource": "instance", "generation": 1}
    assert first["create"]["instance"]["params"] == second["create"]["instance"]["params"]


def test_a_box_made_again_gets_a_new_generation():
    gone = instance(state="terminated", generation=3, iid="i-0old")
    result = plan(what=found(instances=[gone]))
    assert result["create"]["instance"]["token"]["generation"] == 4


@pytest.mark.parametrize("action", ["launch", "start", "find"])
def test_two_live_instances_of_one_box_are_refused_not_guessed(action):
    twins = found(instances=[instance(iid="i-0001"), instance(iid="i-0002")])
    refused(plan(action, twins), "Box 'lab' has 2 instances", "i-0001, i-0002", "gpubox will not pick one")


def test_stop_and_teardown_act_on_every_instance_of_the_box():
    twins = found(instances=[instance(iid="i-0001"), instance(iid="i-0002")])
    assert plan("stop", twins)["stop_ids"] == ["i-0001", "i-0002"]
    assert plan("teardown", twins)["terminate_ids"] == ["i-0001", "i-0002"]


# --- SSH source (finding 8)

@pytest.mark.parametrize("cidr, allowed", [
    ("203.0.113.7/32", True), ("203.0.113.0/24", True), ("198.51.0.0/16", True), ("10.0.0.0/8", True),
    ("2001:db8::/48", True),
    ("0.0.0.0/1", False), ("128.0.0.0/1", False), ("52.0.0.0/8", False), ("198.0.0.0/15", False), ("0.0.0.0/0", False),
    ("::/0", False), ("2600::/16", False),
])
def test_ssh_may_come_from_at_most_a_16_of_public_addresses(cidr, allowed):
    problem = planner.ssh_cidr_problem(cidr)
    assert (problem == "") is allowed, problem
    assert planner.ssh_cidr_problem(cidr, allow_world=True) == ""


def test_a_wide_range_is_refused_with_the_fix():
    refused(plan(ssh_cidr="0.0.0.0/1"), "ssh_cidr '0.0.0.0/1' opens SSH to 2,147,483,648 internet addresses",
            "-e allow_world_ssh=true", "Nothing was created")
    refused(plan(ssh_cidr="0.0.0.0/0"), "opens SSH to the whole internet")
    assert plan(ssh_cidr="0.0.0.0/1", allow_world_ssh="true")["problems"] == []


def test_the_callers_ip_is_used_when_no_range_is_given_and_its_lookup_failing_is_explained():
    assert plan(ssh_cidr="")["record"]["ssh_cidr"] == "198.51.100.23/32"
    refused(plan(what=found(public_ip="", public_ip_error="timed out"), ssh_cidr=""),
            "Could not detect your public IP address from https://checkip.amazonaws.com (timed out)")


# --- Everything else a launch refuses, before anything changes

@pytest.mark.parametrize("overrides, fragments", [
    ({"type": "g5.xlarg"}, ["'g5.xlarg' is not a GPU instance type gpubox knows", "Did you mean g5.xlarge"]),
    ({"type": "t3.micro"}, ["'t3.micro' is not a GPU instance type", "allow_non_gpu=true"]),
    ({"type": "g4ad.xlarge"}, ["g4ad.xlarge has AMD Radeon Pro V520 GPUs", "g4dn.xlarge"]),
    ({"type": "p3.2xlarge"}, ["p3.2xlarge is retired: EC2 no longer offers it in us-east-1", "Nearest current types:",
                              "g4dn.xlarge (1x NVIDIA T4, 16 GiB GPU memory, 8.1 FP32 TFLOP/s",
                              "Run instead: ansible-playbook launch.yml -e name=lab -e type="]),
    ({"ami": "ubuntu"}, ["ami 'ubuntu' is not dlami, plain or an AMI id"]),
    ({"ami": "ami-0bbbbbbbbbbbbbbbb"}, ["AMI ami-0bbbbbbbbbbbbbbbb is built for arm64", "x86_64"]),
    ({"ami": "ami-0123456789abcdef9"}, ["AMI ami-0123456789abcdef9 cannot be used in us-east-1"]),
    ({"volume_size": 8}, ["volume_size 8 GiB is too small"]),
    ({"data_volume_size": -1}, ["data_volume_size -1 must be 0"]),
    ({"os": "windows"}, ["os 'windows' is not one gpubox knows"]),
])
def test_launch_refusals(overrides, fragments):
    refused(plan(**overrides), *fragments, "Nothing was created")


def test_a_missing_deep_learning_ami_parameter_says_what_to_pass():
    refused(plan(what=found(parameters={}, parameter_errors={UBUNTU_PARAM: "ParameterNotFound"})),
            "Deep Learning Base OSS Nvidia Driver GPU AMI", UBUNTU_PARAM, "-e ami=ami-", "or try -e ami=plain")


def test_volta_goes_to_the_plain_image_and_says_why():
    result = plan(type="p3dn.24xlarge")
    assert result["create"]["instance"]["params"]["ImageId"] == "ami-0aaaaaaaaaaaaaaaa"
    assert result["record"]["image"] == "plain"
    assert any("V100" in n and "plain ubuntu24.04 AMI" in n for n in result["notes"])


def test_a_retired_type_is_substituted_only_when_asked():
    result = plan(type="p3.2xlarge", substitute=True)
    assert result["create"]["instance"]["params"]["InstanceType"] == "g4dn.xlarge"
    assert "p3.2xlarge is not offered in us-east-1; launching g4dn.xlarge instead (substitute=true)." in result["notes"]


def test_no_default_vpc_and_no_subnet_where_the_volume_is():
    refused(plan(what=found(vpc=None)), "us-east-1 has no default VPC", "create-default-vpc")
    refused(plan(what=found(volumes=[volume(zone="us-east-1c")])), "is in us-east-1c, where g5.xlarge is not offered")


@pytest.mark.parametrize("what", ["key", "group"])
def test_a_key_pair_or_security_group_of_the_box_name_not_made_by_gpubox_is_left_alone(what):
    parts = {"key_pairs": [key(own=False)]} if what == "key" else {"security_groups": [group(own=False)]}
    refused(plan(what=found(**parts)), "named gpubox-lab already exists", "gpubox did not create it", "-e name=OTHER")


def test_the_quota_is_checked_before_a_launch_and_explained():
    short = found(quotas={"L-DB2E81BA": {"value": 8.0, "error": ""}}, running_vcpus={"L-DB2E81BA": 8})
    refused(plan(what=short), "g5.xlarge needs 4 vCPUs", "is 8 vCPUs with 8 in use, so 0 are available",
            "--quota-code L-DB2E81BA --desired-value 12")
    unreadable = found(quotas={"L-DB2E81BA": {"value": None, "error": "AccessDeniedException: no"}})
    result = plan(what=unreadable)
    assert result["problems"] == [] and "AccessDeniedException: no" in result["warnings"][0]


def test_a_resize_counts_the_vcpus_it_frees():
    current = found(instances=[instance(itype="g5.xlarge", zone="us-east-1b", volume="vol-data")],
                    volumes=[volume(attached_to="i-0001", zone="us-east-1b")], security_groups=[group()],
                    key_pairs=[key()], quotas={"L-DB2E81BA": {"value": 4.0, "error": ""}},
                    running_vcpus={"L-DB2E81BA": 4})
    assert plan(what=current, type="g6.xlarge", resize=True)["problems"] == []


def test_unreadable_aws_answers_are_refusals_that_say_what_to_do():
    refused(plan(what={"region": "us-east-1", "errors": [{"read": "caller", "code": "NoCredentialsError",
                                                          "message": "Unable to locate credentials"}]}),
            "No usable AWS credentials (Unable to locate credentials)", "aws configure", "AWS_ACCESS_KEY_ID")
    refused(plan("stop", {"region": "us-east-1", "caller": ME, "errors": [
        {"read": "instances", "code": "UnauthorizedOperation", "message": "not authorized"}]}),
        "Could not read instances", "docs/iam-policy.json")


# --- stop, start, teardown, configure and verify, status

def test_stop_start_and_find_of_a_box_that_does_not_exist():
    for action in ("stop", "start"):
        refused(plan(action), "There is no box named 'lab' in us-east-1", "status.yml")
    refused(plan("find"), "Box 'lab' is not running", "start.yml -e name=lab")


def test_stop_counts_what_still_bills():
    result = plan("stop", found(instances=[instance(volume="vol-data")],
                                volumes=[volume(attached_to="i-0001"), volume(vid="vol-root", role="root", size=100)]))
    assert result["changes"] == ["stop"] and result["billed_gib"] == 150
    assert plan("stop", found(instances=[instance(state="stopped")]))["changes"] == []


def test_start_of_a_stopping_box_waits():
    refused(plan("start", found(instances=[instance(state="stopping")])), "still stopping")


def test_teardown_lists_what_it_removes_and_keeps_the_data():
    current = found(instances=[instance(volume="vol-data")], volumes=[volume(attached_to="i-0001")],
                    security_groups=[group(used_by=["i-0001"])], key_pairs=[key(used_by=["i-0001"])])
    result = plan("teardown", current)
    assert result["changes"] == ["terminate", "delete_security_group", "delete_key"]
    assert result["doomed"] == ["instance i-0001 (g5.xlarge)", "security group sg-box", "key pair gpubox-lab"]
    no_data = plan("teardown", found(instances=[instance()]))
    assert no_data["doomed"] == ["instance i-0001 (g5.xlarge) and its root disk, where your notebooks are "
                                 "(no data volume is attached to it)"]
    # A data volume that an interrupted launch left unattached: the notebooks are on the root disk all the same.
    loose = plan("teardown", found(instances=[instance()], volumes=[volume()]))
    assert "where your notebooks are" in loose["doomed"][0]
    assert "it was not attached to the box, whose notebooks were on its root disk" in loose["kept"][0]
    assert any("Kept data volume vol-data" in k and "delete_data=true" in k for k in result["kept"])
    wiped = plan("teardown", current, delete_data=True)
    assert wiped["delete_volume_ids"] == ["vol-data"] and "data volume vol-data (50 GiB, your notebooks and data)" in wiped["doomed"]


def test_teardown_keeps_a_group_or_key_that_another_instance_uses():
    current = found(security_groups=[group(used_by=["i-0mine"])], key_pairs=[key(used_by=["i-0mine"])])
    result = plan("teardown", current)
    assert result["changes"] == [] and len(result["kept"]) == 2
    assert "Nothing of box 'lab' is left to remove in us-east-1." in result["notes"]


def test_configure_without_a_name_takes_your_one_running_box_or_all_when_asked():
    mine = [instance("a", iid="i-a"), instance("b", iid="i-b", state="stopped"), instance("c", owner=ALICE, iid="i-c")]
    result = plan("find", found(instances=mine), name="")
    assert [r["name"] for r in result["records"]] == ["a"]

    two = mine + [instance("d", iid="i-d")]
    refused(plan("find", found(instances=two), name=""), "You have 2 running boxes in us-east-1 (a, d)",
            "-e name=NAME", "-e all_boxes=true")
    assert [r["name"] for r in plan("find", found(instances=two), name="", all_boxes=True)["records"]] == ["a", "d"]
    refused(plan("find", found(instances=[]), name=""), "You have no running box")
    twins = found(instances=[instance("a", iid="i-a1"), instance("a", iid="i-a2")])
    refused(plan("find", twins, name=""), "Box 'a' has several running instances")


def test_a_box_with_two_data_volumes_is_refused_not_guessed():
    two = found(volumes=[volume(vid="vol-1"), volume(vid="vol-2")])
    refused(plan(what=two), "Box 'lab' has 2 data volumes (vol-1, vol-2)", "delete-volume")
    assert plan("teardown", two, delete_data=True)["delete_volume_ids"] == ["vol-1", "vol-2"]


def test_status_shows_every_box_with_its_owner():
    boxes = [instance("a"), instance("b", owner=ALICE, state="stopped", iid="i-b")]
    lines = plan("status", found(instances=boxes), name="")["lines"]
    assert lines[0].split() == ["NAME", "OWNER", "TYPE", "GPUS", "MARKET", "STATE", "PUBLIC", "IP", "UPTIME", "EST.", "$/H",
                                "SPOT", "$/H", "AUTO-STOP", "CAP"]
    assert lines[1].split() == ["a", "you", "g5.xlarge", "1x", "A10G", "on-demand", "running", "54.1.2.3", "2h30m", "1.01",
                                "-", "-", "-"]
    # The name its creator wrote, and the id AWS enforces beside it.
    assert lines[2].split()[:3] == ["b", "alice", "(AIDAALICE)"] and "0 (disks only)" in lines[2]
    legacy = instance("c", iid="i-c")
    del legacy["tags"][identity.OWNER]
    assert plan("status", found(instances=[legacy]), name="")["lines"][1].split()[:2] == ["c", "nobody"]
    assert plan("status", found(), name="")["lines"] == ["No gpubox boxes in this region."]


def test_the_box_record_is_the_same_from_the_inventory_and_the_planner():
    inst = instance(volume="vol-data")
    record = planner.box_record(inst)
    with_catalog = planner.box_record(inst, FAMILIES, QUOTAS)
    assert {k: with_catalog[k] for k in record} == record
    assert (with_catalog["gpus"], with_catalog["usd_per_hour"]) == ("1x NVIDIA A10G", 1.006)
    assert (record["name"], record["owner"], record["address"], record["ssh_user"], record["volume_id"],
            record["image"], record["generation"]) == ("lab", "AIDAME", "54.1.2.3", "ubuntu", "vol-data", "dlami", 1)
    stopped = planner.box_record(instance(state="stopped"))
    assert stopped["address"] == "172.31.0.5"


def test_a_substituted_box_is_kept_by_the_same_launch_again():
    current = found(instances=[instance(itype="g4dn.xlarge", volume="vol-data")], volumes=[volume(attached_to="i-0001")],
                    security_groups=[group()], key_pairs=[key()])
    result = plan(what=current, type="p3.2xlarge", substitute=True)
    assert (result["problems"], result["changes"]) == ([], [])
    refused(plan(what=current, type="p3.2xlarge"), "already exists as a g4dn.xlarge")


def test_configure_waits_for_a_data_volume_left_unattached_rather_than_use_the_root_disk():
    result = plan("find", found(instances=[instance()], volumes=[volume()]))
    assert result["record"]["volume_id"] == "vol-data"


def test_a_kept_data_volume_is_attached_even_when_no_new_one_is_asked_for():
    kept = found(volumes=[volume()], security_groups=[group()], key_pairs=[key()])
    result = plan(what=kept, data_volume_size=0)
    assert "attach_volume" in result["changes"] and result["attach"]["volume_id"] == "vol-data"


def test_an_older_gpubox_data_volume_is_not_passed_over_for_a_new_one():
    old = volume()
    del old["tags"][identity.OWNER], old["tags"][identity.OWNER_ARN]
    refused(plan(what=found(volumes=[old])), "has a data volume without an owner tag (vol-data)", "-e adopt=true")
    adopted = plan(what=found(volumes=[old]), adopt=True)
    assert adopted["attach"]["volume_id"] == "vol-data" and adopted["adopt"]["ids"] == ["vol-data"]


def test_another_owners_key_is_not_adopted_and_yours_is_checked_against_your_public_key():
    theirs = key()
    del theirs["tags"][identity.OWNER], theirs["tags"][identity.OWNER_ARN]
    theirs["matches_public_key"] = False
    refused(plan(what=found(key_pairs=[theirs]), adopt=True), "Key pair gpubox-lab holds another public key than yours")
    mine = {**key(), "matches_public_key": False}
    result = plan(what=found(key_pairs=[mine]))
    assert result["problems"] == [] and "holds another public key" in result["warnings"][-1]


def test_a_public_key_without_its_private_key_is_refused():
    refused(plan(what=found(private_key_exists=False)), "has no private key beside it", "-e ssh_private_key=PATH")


def test_another_owners_instance_of_the_same_name_does_not_block_yours():
    mallory = {"user_id": "AIDAMAL", "arn": "arn:aws:iam::123456789012:user/mallory"}
    both = found(instances=[instance(), instance(owner=mallory, iid="i-mal")])
    result = plan("stop", both)
    assert result["stop_ids"] == ["i-0001"] and "Left alone: instances of box 'lab' that are not yours (i-mal" in \
        result["notes"][0]


def test_allow_other_owner_acts_for_the_boxs_owner_and_never_mixes_owners():
    bob = {"user_id": "AIDABOB", "arn": "arn:aws:iam::123456789012:user/bob"}
    # Alice's kept data volume, Bob's box of the same name: acting on Bob's box leaves Alice's volume alone.
    parts = found(instances=[instance(owner=bob)], volumes=[volume(owner=ALICE)], security_groups=[group(owner=bob)],
                  key_pairs=[key(owner=bob)])
    gone = plan("teardown", parts, allow_other_owner=True, delete_data=True)
    assert gone["terminate_ids"] == ["i-0001"] and gone["delete_volume_ids"] == []
    launched = plan("launch", parts, allow_other_owner=True, data_volume_size=0)
    assert "attach_volume" not in launched["changes"]
    mixed = found(instances=[instance(owner=bob), instance(owner=ALICE, iid="i-a")])
    refused(plan("stop", mixed, allow_other_owner=True), "resources of several owners")


# --- Third review

@pytest.mark.parametrize("user", ["ubuntu\nHost *\n  ProxyCommand sh -c 'id > /tmp/x'", "ubuntu; rm -rf ~", "Ubuntu", ""])
def test_an_ssh_user_tag_that_is_not_a_login_name_never_reaches_the_record(user):
    """The record's user goes into ~/.ssh/gpubox.d/NAME.conf and a printed command: a tag may hold anything."""
    record = planner.box_record(instance(**{"gpubox:ssh-user": user}))
    assert record["ssh_user"] == "ubuntu"
    al = planner.box_record(instance(**{"gpubox:ssh-user": user, "gpubox:os": "al2023"}))
    assert al["ssh_user"] == "ec2-user"
    assert planner.box_record(instance(**{"gpubox:ssh-user": "ec2-user"}))["ssh_user"] == "ec2-user"
    stopped = found(instances=[instance(state="stopped", **{"gpubox:ssh-user": user})], security_groups=[group()],
                    key_pairs=[key()])
    assert plan("launch", stopped)["record"]["ssh_user"] == "ubuntu"


def test_allow_other_owner_never_creates_for_another_owner():
    """Alice's key pair and group but no instance: a new instance would be Bob's, beside Alice's group and key."""
    parts = found(volumes=[volume(owner=ALICE)], security_groups=[group(owner=ALICE)], key_pairs=[key(owner=ALICE)])
    text = refused(plan("launch", parts, allow_other_owner=True), "Box 'lab' is AIDAALICE's", "run instance",
                   "Ask its owner to launch it")
    assert "Nothing was created." in text
    # What exists of hers can still be started, with her owner kept.
    stopped = found(instances=[instance(owner=ALICE, state="stopped", volume="vol-data")],
                    volumes=[volume(owner=ALICE, attached_to="i-0001")], security_groups=[group(owner=ALICE)],
                    key_pairs=[key(owner=ALICE)])
    started = plan("launch", stopped, allow_other_owner=True)
    assert started["problems"] == [] and started["changes"] == ["start"] and started["record"]["owner"] == "AIDAALICE"


@pytest.mark.parametrize("action", ["stop", "start", "teardown", "find"])
def test_adopt_never_claims_a_key_pair_whose_public_key_it_did_not_check(action):
    """Only launch reads your public key: elsewhere an ownerless key pair stays nobody's."""
    old_key, old_box = key(), instance()
    for resource in (old_key, old_box):
        del resource["tags"][identity.OWNER], resource["tags"][identity.OWNER_ARN]
    result = plan(action, found(instances=[old_box], key_pairs=[old_key]), adopt=True)
    assert "gpubox-lab" not in result["adopt"].get("ids", []) and "i-0001" in result["adopt"]["ids"]
    assert result["delete_key_names"] == []
    unknown = plan("launch", found(instances=[old_box], key_pairs=[old_key], public_key={"exists": False}), adopt=True)
    refused(unknown, "Key pair gpubox-lab holds another public key than yours")


def test_a_data_volume_that_cannot_attach_is_refused_before_anything_changes():
    other_zone = found(instances=[instance()], volumes=[volume(zone="us-east-1b")], security_groups=[group()],
                       key_pairs=[key()])
    refused(plan("launch", other_zone), "is in us-east-1b, but its instance i-0001 is in us-east-1a",
            "teardown.yml keeps the data volume")
    held = found(instances=[instance(state="stopped")], volumes=[volume(attached_to="i-dying")],
                 security_groups=[group()], key_pairs=[key()])
    refused(plan("launch", held), "is still attached to i-dying", "Wait a minute")
    # A new instance goes where the volume is, so it attaches.
    fresh = plan("launch", found(volumes=[volume(zone="us-east-1b")]))
    assert fresh["record"]["zone"] == "us-east-1b" and fresh["attach"]["volume_id"] == "vol-data"


@pytest.mark.parametrize("action", ["launch", "start"])
def test_a_pending_instance_is_waited_for_not_published_with_its_private_address(action):
    """A run interrupted while the instance started: the next one waits for it to run and get its public IP."""
    pending = found(instances=[instance(state="pending", volume="vol-data")], volumes=[volume(attached_to="i-0001")],
                    security_groups=[group()], key_pairs=[key()])
    result = plan(action, pending)
    assert result["problems"] == [] and result["changes"] == ["wait_running"] and result["wait_ids"] == ["i-0001"]


def test_new_resources_share_the_boxs_security_group_as_their_tokens_salt():
    assert plan("launch")["create"]["security_group_id"] == "new"
    kept = found(volumes=[volume()], security_groups=[group()], key_pairs=[key()])
    assert plan("launch", kept)["create"]["security_group_id"] == "sg-box"


# --- Auto-stop settings as tags, for status.yml (issue 10)

def test_status_shows_each_boxs_auto_stop_setting_and_cap_from_its_tags():
    boxes = [instance("a", **{"gpubox:autostop-minutes": "60", "gpubox:max-hours": "8"}),
             instance("b", iid="i-b", **{"gpubox:autostop-minutes": "0", "gpubox:max-hours": "0"}),
             instance("c", iid="i-c")]  # configured before gpubox kept them, or not configured
    lines = plan("status", found(instances=boxes), name="")["lines"]
    assert [line.split()[-2:] for line in lines[1:]] == [["60m", "8h"], ["off", "-"], ["-", "-"]]
    record = planner.box_record(boxes[0])
    assert (record["autostop_minutes"], record["max_hours"]) == ("60", "8")


def test_the_aws_half_never_tags_auto_stop_settings_the_box_does_not_have_yet():
    """The host plays write the tags once the box has the settings (configure, autostop.yml), never launch."""
    new = plan("launch", autostop_minutes="60", max_hours="8")
    tags = {t["Key"] for t in new["create"]["instance"]["params"]["TagSpecifications"][0]["Tags"]}
    assert not {"gpubox:autostop-minutes", "gpubox:max-hours"} & tags
    box = found(instances=[instance(volume="vol-data", **{"gpubox:autostop-minutes": "60"})],
                volumes=[volume(attached_to="i-0001")], security_groups=[group()], key_pairs=[key()])
    assert plan("launch", box, autostop_minutes="120", max_hours="0")["changes"] == []


def test_autostop_finds_your_running_box_and_says_what_to_change():
    box = found(instances=[instance(**{"gpubox:autostop-minutes": "60"})])
    result = plan("autostop", box, autostop_minutes="", max_hours="8", hold="")
    assert result["problems"] == [] and result["changes"] == []
    assert result["record"]["instance_id"] == "i-0001" and result["records"] == [result["record"]]
    assert plan("autostop", box, autostop_minutes="", max_hours="", hold="3h")["problems"] == []
    refused(plan("autostop", box, autostop_minutes="", max_hours="", hold=""), "Say what to change: -e minutes=120")
    refused(plan("autostop", found(instances=[instance(state="stopped")]), autostop_minutes="30", max_hours="",
                 hold=""), "is not running")
    refused(plan("autostop", found(instances=[instance(owner=ALICE)]), autostop_minutes="30", max_hours="", hold=""),
            "belongs to", "not to you")


@pytest.mark.parametrize("setting, value, fragment", [
    ("autostop_minutes", "1.5", "is not a whole number of minutes"), ("autostop_minutes", "-5", "not a whole number"),
    ("max_hours", "eight", "is not a number of hours"), ("hold", "3 days", "is not a duration"),
    ("hold", "h", "is not a duration"), ("hold", "500h", "longer than a week")])
def test_bad_auto_stop_settings_are_refused_before_anything_changes(setting, value, fragment):
    given = {"autostop_minutes": "", "max_hours": "", "hold": "", setting: value}
    refused(plan("autostop", found(instances=[instance()]), **given), fragment, "Nothing was changed.")
    if setting != "hold":
        refused(plan("launch", **{setting: value}), fragment, "Nothing was created.")
