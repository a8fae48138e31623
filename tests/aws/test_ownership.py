"""Each command touches only its own box: what review found a name, a tag or a second user could reach.

Each test here failed on the AWS half as it was before gather -> plan -> apply (see issue 9's findings).
"""

import threading

import pytest

from support.gpubox import MY_CIDR, UBUNTU_AMI, free_port

# The identity of moto's default credentials: its user id, and its ARN.
MOTO_USER = "arn:aws:sts::123456789012:user/moto"
MOTO_OWNER = f"AKIAIOSFODNN7EXAMPLE ({MOTO_USER})"


def launch_all(gpubox, *names):
    for name in names:
        result = gpubox.launch(name=name)
        assert result.rc == 0, result.text


@pytest.mark.parametrize("playbook, settings", [
    ("teardown.yml", {"confirm": True, "delete_data": True}), ("stop.yml", {}), ("start.yml", {}),
    ("configure.yml", {}), ("verify.yml", {}), ("launch.yml", {"configure": False}),
])
def test_a_wildcard_in_a_name_reaches_no_box(gpubox, aws, playbook, settings):
    launch_all(gpubox, "x1", "x2")
    before = aws.snapshot()
    for name in ("x*", "x?"):
        result = gpubox.run(playbook, name=name, **settings)
        assert result.rc != 0
        assert result.said(f"name '{name}' is not a valid box name"), result.text
    assert aws.snapshot() == before
    assert {i["State"]["Name"] for i in aws.instances()} == {"running"}


def test_a_box_whose_name_extends_another_never_takes_its_volumes(gpubox, aws):
    # ec2_instance copied Name=gpubox-lab-data onto box lab-data's root volume, and box lab found its data volume
    # by Name=gpubox-lab-data.
    launch_all(gpubox, "lab-data", "lab")
    [theirs] = aws.data_volumes("lab-data")
    [mine] = aws.data_volumes("lab")
    assert mine["VolumeId"] != theirs["VolumeId"]
    assert mine["Attachments"][0]["InstanceId"] == aws.instance("lab")["InstanceId"]
    theirs_before = sorted(v["VolumeId"] for v in aws.volumes(**{"gpubox:name": "lab-data"}))

    gone = gpubox.run("teardown.yml", name="lab", confirm=True, delete_data=True)
    assert gone.rc == 0, gone.text
    assert aws.data_volumes("lab") == []
    assert sorted(v["VolumeId"] for v in aws.volumes(**{"gpubox:name": "lab-data"})) == theirs_before
    assert aws.instance("lab-data")["State"]["Name"] == "running"


def test_another_owners_box_of_the_same_name_is_refused_and_left_as_it_is(gpubox, aws):
    assert gpubox.launch().rc == 0
    alice = aws.identity("alice")
    before, rules = aws.snapshot(), aws.groups()[0]["IpPermissions"]
    for playbook, settings in [
        ("launch.yml", {"type": "g5.xlarge", "ssh_cidr": "198.51.100.9/32", "configure": False}),
        ("teardown.yml", {"confirm": True, "delete_data": True}), ("stop.yml", {}), ("start.yml", {}),
        ("configure.yml", {"name": "gpubox"}),
    ]:
        result = gpubox.run(playbook, env=alice, **settings)
        assert result.rc != 0
        assert result.said(f"Box 'gpubox' in us-east-1 belongs to {MOTO_OWNER}, not to you (",
                           "arn:aws:iam::123456789012:user/alice)", "-e allow_other_owner=true"), result.text
    assert aws.snapshot() == before and aws.groups()[0]["IpPermissions"] == rules
    assert aws.instance()["State"]["Name"] == "running"

    status = gpubox.run("status.yml", env=alice)
    assert status.said("gpubox", "moto", "g5.xlarge", "running"), status.text

    on_purpose = gpubox.run("stop.yml", env=alice, allow_other_owner=True)
    assert on_purpose.rc == 0, on_purpose.text
    assert aws.instance()["State"]["Name"] == "stopped"


def test_what_gpubox_creates_carries_its_owner(gpubox, aws):
    assert gpubox.launch().rc == 0
    owner = aws.tags(aws.instance())["gpubox:owner"]
    assert owner == "AKIAIOSFODNN7EXAMPLE"  # moto's user id for its default credentials
    resources = [aws.instance(), *aws.volumes(**{"gpubox:name": "gpubox"}), *aws.groups(), *aws.keys()]
    assert len(resources) == 5  # instance, root and data volumes, security group, key pair
    for resource in resources:
        tags = aws.tags(resource)
        assert (tags["gpubox:managed-by"], tags["gpubox:owner"], tags["gpubox:owner-arn"]) == ("gpubox", owner, MOTO_USER)


@pytest.mark.parametrize("start", ["from nothing", "with the instance gone"])
def test_two_launches_at_once_make_one_box(gpubox, aws, proxy, start):
    if start == "with the instance gone":  # terminated by hand: both runs plan the same new instance
        assert gpubox.launch().rc == 0
        aws.ec2.terminate_instances(InstanceIds=[aws.instance()["InstanceId"]])
    # Both requests reach EC2 before either is answered, as when two terminals run launch at the same moment.
    proxy.hold("RunInstances", 2, timeout=60)
    first_call = len(proxy.calls)
    results = [None, None]

    def launch(i):
        results[i] = gpubox.launch()

    runs = [threading.Thread(target=launch, args=(i,)) for i in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(600)
    # Both asked EC2 for the instance (and from nothing, for the data volume too), with the same tokens.
    assert proxy.calls[first_call:].count(("ec2", "RunInstances")) == 2
    assert proxy.idempotent_replays == (2 if start == "from nothing" else 1)
    [instance] = aws.instances()
    [volume] = aws.data_volumes()
    assert volume["Attachments"][0]["InstanceId"] == instance["InstanceId"]
    assert len(aws.keys()) == len(aws.groups()) == 1
    assert [r.rc for r in results] == [0, 0], [r.text for r in results]


@pytest.mark.parametrize("name", ["launched", "targets"])
def test_a_box_named_like_launchs_own_group_is_just_another_box(gpubox, aws, name):
    launch_all(gpubox, name)
    closed = free_port()  # nothing listens there: the host play fails at once, on the hosts it targets
    result = gpubox.launch(name="other", configure=True, ssh_host="127.0.0.1", ssh_port=closed, instance_wait_timeout=3)
    assert result.rc != 0
    hosts = {h for p in result.output["plays"] for t in p["tasks"] for h in t["hosts"] if h != "localhost"}
    assert hosts == {"gpubox-other"}


@pytest.mark.parametrize("playbook", ["configure.yml", "verify.yml"])
def test_configure_and_verify_without_a_name_act_on_one_box_only(gpubox, aws, playbook):
    launch_all(gpubox, "a", "b")
    several = gpubox.run(playbook)
    assert several.rc != 0
    assert several.said("You have 2 running boxes in us-east-1 (a, b)", "-e name=NAME", "-e all_boxes=true")
    assert not [h for p in several.output["plays"] for t in p["tasks"] for h in t["hosts"] if h != "localhost"]

    # all_boxes=true targets both (and then stops at the one-machine SSH override, without any connection).
    both = gpubox.run(playbook, all_boxes=True, ssh_host="127.0.0.1", ssh_port=free_port())
    if playbook == "configure.yml":
        assert both.said("this run targets 2: gpubox-a, gpubox-b"), both.text
    else:
        hosts = {h for p in both.output["plays"] for t in p["tasks"] for h in t["hosts"] if h != "localhost"}
        assert hosts == {"gpubox-a", "gpubox-b"}

    assert gpubox.run("stop.yml", name="b").rc == 0
    one = gpubox.run(playbook, ssh_host="127.0.0.1", ssh_port=free_port(), instance_wait_timeout=3)
    hosts = {h for p in one.output["plays"] for t in p["tasks"] for h in t["hosts"] if h != "localhost"}
    assert hosts == {"gpubox-a"}


def test_a_wide_ssh_range_is_refused(gpubox, aws):
    before = aws.snapshot()
    result = gpubox.launch(ssh_cidr="0.0.0.0/1")
    assert result.rc != 0 and result.said("ssh_cidr '0.0.0.0/1' opens SSH to 2,147,483,648 internet addresses",
                                          "-e allow_world_ssh=true")
    assert aws.snapshot() == before


def test_a_new_address_replaces_the_ssh_rule_and_nothing_else(gpubox, aws):
    assert gpubox.launch().rc == 0
    moved = gpubox.launch(ssh_cidr="198.51.100.9/32")
    assert moved.rc == 0, moved.text
    [group] = aws.groups()
    assert [r["CidrIp"] for p in group["IpPermissions"] for r in p["IpRanges"]] == ["198.51.100.9/32"]
    assert gpubox.launch(ssh_cidr="198.51.100.9/32").changed == 0
    assert MY_CIDR not in str(group)


def test_a_box_from_before_owner_tags_is_yours_only_once_adopted(gpubox, aws):
    assert gpubox.launch().rc == 0
    ids = [aws.instance()["InstanceId"], *(v["VolumeId"] for v in aws.volumes(**{"gpubox:name": "gpubox"})),
           *(g["GroupId"] for g in aws.groups()), *(k["KeyPairId"] for k in aws.keys())]
    aws.ec2.delete_tags(Resources=ids, Tags=[{"Key": "gpubox:owner"}, {"Key": "gpubox:owner-arn"}])

    refused = gpubox.run("stop.yml")
    assert refused.rc != 0 and refused.said("belongs to nobody (no gpubox:owner tag", "-e adopt=true"), refused.text
    assert aws.instance()["State"]["Name"] == "running"

    adopted = gpubox.run("stop.yml", adopt=True)
    assert adopted.rc == 0, adopted.text
    assert aws.instance()["State"]["Name"] == "stopped"
    def owners():
        return [aws.tags(r).get("gpubox:owner") for r in [aws.instance(), *aws.volumes(**{"gpubox:name": "gpubox"}),
                                                           *aws.groups(), *aws.keys()]]
    # The key pair lets its key's holder in: only a launch, which reads your public key, adopts it.
    assert owners() == ["AKIAIOSFODNN7EXAMPLE"] * 4 + [None]
    assert gpubox.run("start.yml").rc == 0
    relaunched = gpubox.launch(adopt=True)
    assert relaunched.rc == 0, relaunched.text
    assert owners() == ["AKIAIOSFODNN7EXAMPLE"] * 5


def test_another_owners_instance_of_your_boxs_name_does_not_stop_you_stopping_yours(gpubox, aws):
    assert gpubox.launch().rc == 0
    mine = aws.instance()["InstanceId"]
    decoy = aws.ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge",
                                  TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                      {"Key": "gpubox:managed-by", "Value": "gpubox"},
                                      {"Key": "gpubox:name", "Value": "gpubox"},
                                      {"Key": "gpubox:owner", "Value": "AIDAMALLORY"}]}])["Instances"][0]["InstanceId"]
    stopped = gpubox.run("stop.yml")
    assert stopped.rc == 0, stopped.text
    assert stopped.said("Left alone: instances of box 'gpubox' that are not yours", decoy)
    states = {i["InstanceId"]: i["State"]["Name"] for i in aws.instances()}
    assert states == {mine: "stopped", decoy: "running"}


def test_configure_with_the_projects_inventory_folder_never_targets_this_machine(gpubox, aws):
    # -i inventory/ holds localhost (the controller) and the aws_ec2 inventory: neither is a host to configure.
    result = gpubox.run("configure.yml", env={"ANSIBLE_INVENTORY": "inventory/"})
    assert result.rc != 0 and result.said("You have no running box in us-east-1"), result.text
    assert [p["play"]["name"] for p in result.output["plays"]] == ["Manage the gpubox box on EC2"]
