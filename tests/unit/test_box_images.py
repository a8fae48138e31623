"""Baked images (module_utils/box_images.py, and the bake planner in box_plan.py), table-driven: what exists -> the
decision. Which image ami=baked launches, what prune_keep removes, names, tags, costs, and every refusal of bake.yml.
No AWS, no Ansible: pure functions, as the planner's own tests (test_box_plan.py); and the gather's reads of images and
snapshots with AWS's answers stubbed by botocore's Stubber (what gpubox sends, and which command reads them).
"""

import boto3
import pytest
from botocore.stub import Stubber

from ansible_collections.gpubox.box.plugins.module_utils import box_gather as gather
from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity
from ansible_collections.gpubox.box.plugins.module_utils import box_images as images
from ansible_collections.gpubox.box.plugins.module_utils import box_plan as planner

from test_box_plan import ALICE, FAMILIES, IMAGES as OS_IMAGES, ME, QUOTAS


def image(iid, created, os_name="ubuntu24.04", arch="x86_64", state="available", owner=ME, box="lab", size=100,
          snapshot=None, **extra):
    tags = {**identity.box_tags(box, owner["user_id"], owner["arn"]), identity.ROLE: "image", images.OS: os_name,
            images.ARCH: arch, **extra}
    return {"id": iid, "name": f"gpubox-{box}-{created[:10].replace('-', '')}-0000", "state": state,
            "architecture": arch, "created": created, "root_device_name": "/dev/sda1", "tags": tags,
            "snapshots": [{"id": snapshot or f"snap-{iid[4:]}", "size": size, "device": "/dev/sda1"}]}


def snapshot_tags(owner=ME, box="lab"):
    return {"tags": identity.box_tags(box, owner["user_id"], owner["arn"])}


OLD = image("ami-old", "2026-11-01T10:00:00.000Z")
MID = image("ami-mid", "2026-11-15T10:00:00.000Z")
NEW = image("ami-new", "2026-12-01T10:00:00.000Z")


# --- ami=baked: which image a new box launches from

@pytest.mark.parametrize("case, found, os_name, arch, chosen, said", [
    ("the newest available one", [OLD, NEW, MID], "ubuntu24.04", "x86_64", "ami-new", ""),
    ("a newer one still being made is passed over", [OLD, image("ami-p", "2026-12-02T00:00:00Z", state="pending")],
     "ubuntu24.04", "x86_64", "ami-old", ""),
    ("a failed one is passed over", [OLD, image("ami-f", "2026-12-02T00:00:00Z", state="failed")],
     "ubuntu24.04", "x86_64", "ami-old", ""),
    ("another OS's is not taken", [OLD, image("ami-al", "2026-12-02T00:00:00Z", os_name="al2023")],
     "ubuntu24.04", "x86_64", "ami-old", ""),
    ("another architecture's is not taken", [OLD, image("ami-arm", "2026-12-02T00:00:00Z", arch="arm64")],
     "ubuntu24.04", "x86_64", "ami-old", ""),
    ("another owner's is never taken", [image("ami-alice", "2026-12-02T00:00:00Z", owner=ALICE)],
     "ubuntu24.04", "x86_64", None, "You have no baked gpubox image for ubuntu24.04 (x86_64) in us-east-1"),
    ("an image without gpubox:role=image is not one", [{**NEW, "tags": {**NEW["tags"], identity.ROLE: "data"}}],
     "ubuntu24.04", "x86_64", None, "bake.yml -e name=NAME"),
    ("an image gpubox did not make is not one", [{**NEW, "tags": {k: v for k, v in NEW["tags"].items()
                                                                   if k != identity.MANAGED_BY}}],
     "ubuntu24.04", "x86_64", None, "images.yml lists yours"),
    ("none at all", [], "ubuntu24.04", "x86_64", None, "or launch with -e ami=dlami. Nothing was created."),
    ("only other OSes: it names them", [image("ami-al", "2026-12-02T00:00:00Z", os_name="al2023")],
     "ubuntu24.04", "x86_64", None, "You have images for al2023: pass that os with -e os=..."),
    ("only one being made: wait", [image("ami-p", "2026-12-02T00:00:00Z", state="pending")],
     "ubuntu24.04", "x86_64", None, "is still being made: wait until ansible-playbook images.yml shows it available"),
])
def test_ami_baked_chooses_your_newest_available_image_for_the_os_and_architecture(case, found, os_name, arch, chosen,
                                                                                   said):
    picked, problem = images.choose_baked_image(found, os_name, arch, ME["user_id"], "us-east-1")
    assert (picked or {}).get("id") == chosen, case
    assert said in problem, (case, problem)
    assert bool(problem) == (chosen is None), case


def test_images_created_the_same_second_are_ordered_by_their_name():
    first = {**image("ami-1", "2026-12-01T10:00:00.000Z"), "name": "gpubox-lab-20261201-1000"}
    second = {**image("ami-2", "2026-12-01T10:00:00.000Z"), "name": "gpubox-lab-20261201-1000-07"}
    assert images.choose_baked_image([second, first], "ubuntu24.04", "x86_64", ME["user_id"])[0]["id"] == "ami-2"


# --- images.yml -e prune_keep=N

@pytest.mark.parametrize("case, found, keep, doomed", [
    ("keep 2 of 3", [OLD, MID, NEW], 2, ["ami-old"]),
    ("keep 1 of 3", [OLD, NEW, MID], 1, ["ami-mid", "ami-old"]),
    ("keep 0: all go", [OLD, NEW], 0, ["ami-new", "ami-old"]),
    ("keep more than there are", [OLD], 5, []),
    ("per OS and architecture", [OLD, NEW, image("ami-al", "2026-10-01T00:00:00Z", os_name="al2023"),
                                 image("ami-arm", "2026-10-01T00:00:00Z", arch="arm64")], 1, ["ami-old"]),
    ("one being made is kept and not counted", [OLD, NEW, image("ami-p", "2026-12-02T00:00:00Z", state="pending")], 1,
     ["ami-old"]),
    ("a failed one goes and is not counted", [OLD, image("ami-f", "2026-12-02T00:00:00Z", state="failed")], 1,
     ["ami-f"]),
])
def test_prune_keeps_the_newest_per_os_and_architecture(case, found, keep, doomed):
    gone, kept = images.prune_selection(found, keep)
    assert [i["id"] for i in gone] == doomed, case
    assert {i["id"] for i in gone} | {i["id"] for i in kept} == {i["id"] for i in found}, case


@pytest.mark.parametrize("value, keep, problem", [
    ("", None, ""), (None, None, ""), ("0", 0, ""), (" 2 ", 2, ""),
    ("-1", None, "prune_keep '-1' is not a whole number"), ("two", None, "for example -e prune_keep=2"),
])
def test_prune_keep_is_a_whole_number(value, keep, problem):
    got, said = images.parse_keep(value)
    assert got == keep
    assert problem in said and bool(said) == bool(problem)


def test_images_yml_prunes_only_your_images_and_only_snapshots_with_your_tags():
    theirs = image("ami-alice", "2026-01-01T00:00:00Z", owner=ALICE)
    untagged = image("ami-untagged-snap", "2026-10-01T00:00:00Z", snapshot="snap-notours")
    found = {"baked_images": [OLD, MID, NEW, theirs, untagged], "instances": [
        {"instance_id": "i-clone", "image_id": "ami-old", "state": {"name": "stopped"}},
        {"instance_id": "i-gone", "image_id": "ami-mid", "state": {"name": "terminated"}}],
        "snapshots": {"snap-old": snapshot_tags(), "snap-mid": snapshot_tags(), "snap-notours": snapshot_tags(ALICE)}}
    result = images.plan_images(planner._base({"action": "images"}), {"prune_keep": "1"}, found, ME)
    assert result["problems"] == []
    assert result["changes"] == ["deregister_images"]
    assert result["deregister_image_ids"] == ["ami-mid", "ami-old", "ami-untagged-snap"]
    assert result["delete_snapshot_ids"] == ["snap-mid", "snap-old"]
    assert any("Kept snapshot snap-notours" in k for k in result["kept"])
    said = " ".join(result["removed"])
    assert "ami-old" in said and "in use by i-clone: deregistered all the same" in said
    assert "i-gone" not in said  # a terminated instance uses nothing
    assert "Removed 3 images" in result["removed_summary"] and "kept 1" in result["removed_summary"]
    assert not any("ami-alice" in line for line in result["lines"])


def test_images_yml_lists_one_box_with_name_and_refuses_a_bad_prune_keep():
    other_box = image("ami-other", "2026-12-01T00:00:00Z", box="other")
    result = images.plan_images(planner._base({"action": "images"}), {"images_of": "other", "prune_keep": ""},
                                {"baked_images": [OLD, other_box]}, ME)
    assert result["changes"] == [] and result["deregister_image_ids"] == []
    table = "\n".join(result["lines"])
    assert "ami-other" in table and "ami-old" not in table and "1 image, 100 GiB" in table
    refused = images.plan_images(planner._base({"action": "images"}), {"prune_keep": "all"}, {"baked_images": [OLD]}, ME)
    assert refused["problems"] and "Nothing was changed" in refused["problems"][0]


def test_the_table_says_size_and_cost_and_when_there_is_nothing():
    lines = images.image_lines([OLD, NEW], 0.05, {"ami-new": ["i-1", "i-2"]})
    assert lines[0].split() == ["NAME", "IMAGE", "ID", "BOX", "OS", "ARCH", "CREATED", "(UTC)", "STATE", "SIZE", "GIB",
                                "EST.", "$/MONTH", "IN", "USE", "BY"]
    assert "2026-12-01 10:00" in lines[2] and "5.00" in lines[2] and lines[2].endswith("i-1, i-2")
    assert lines[-1].startswith("2 images, 200 GiB of snapshots: about $10.00 a month")
    assert images.image_lines([], 0.05) == [
        "You have no baked gpubox images in this region: ansible-playbook bake.yml -e name=NAME makes one."]


@pytest.mark.parametrize("gib, price, usd", [(0, 0.05, 0.0), (100, 0.05, 5.0), (15, 0.05, 0.75), (150, 0.08, 12.0)])
def test_monthly_cost(gib, price, usd):
    assert images.monthly_usd(gib, price) == usd


@pytest.mark.parametrize("settings, price", [({}, 0.05), ({"snapshot_usd_per_gib_month": "0.06"}, 0.06),
                                             ({"snapshot_usd_per_gib_month": "cheap"}, 0.05)])
def test_the_snapshot_price_comes_from_the_settings(settings, price):
    assert images.price(settings) == price


# --- Names and tags

@pytest.mark.parametrize("now, taken, name", [
    ("2026-12-01T09:05:33+00:00", [], "gpubox-lab-20261201-0905"),
    ("2026-12-01T10:05:33+01:00", [], "gpubox-lab-20261201-0905"),  # UTC
    ("2026-12-01T09:05:33+00:00", ["gpubox-lab-20261201-0905"], "gpubox-lab-20261201-0905-33"),
    ("2026-12-01T09:05:33+00:00", ["gpubox-lab-20261201-0905", "gpubox-lab-20261201-0905-33"],
     "gpubox-lab-20261201-0905-33-2"),
])
def test_image_names_carry_the_box_and_the_utc_minute_and_never_repeat(now, taken, name):
    assert images.image_name("lab", now, taken) == name


def test_image_tags_say_what_was_installed_within_awss_limits():
    base = {"gpubox:managed-by": "gpubox", "gpubox:name": "lab", images.OS: "ubuntu24.04", images.BASE_AMI: ""}
    read = images.image_tags(base, {"read": True, "driver": "580.95.05", "cuda": "12.8",
                                    "envs": ["tensorflow", "jupyter", "x" * 300]})
    assert read[images.DRIVER] == "580.95.05" and read[images.CUDA] == "12.8"
    assert read[images.ENVS].startswith("jupyter tensorflow x") and len(read[images.ENVS]) == 256
    assert images.BASE_AMI not in read  # no empty tags
    assert all(isinstance(v, str) and len(v) <= 256 for v in read.values())
    bare = images.image_tags(base, {"read": True})
    assert (bare[images.DRIVER], bare[images.CUDA], bare[images.ENVS]) == ("none", "none", "none")
    unread = images.image_tags(base, {})
    assert unread[images.INSTALLED] == "unknown" and images.DRIVER not in unread


# --- teardown: the box's images kept (and priced), or removed with delete_images=true

def test_teardown_keeps_the_boxs_images_and_says_what_they_cost():
    box = planner._Box({"instances": []}, "lab", ME)
    found = {"baked_images": [OLD, NEW, image("ami-x", "2026-12-01T00:00:00Z", box="lab-data"),
                              image("ami-alice", "2026-12-01T00:00:00Z", owner=ALICE)]}
    result = images.teardown_images(planner._base({"action": "teardown"}), {}, found, box)
    assert result["changes"] == [] and result["deregister_image_ids"] == []
    assert result["kept"] == [
        "Kept 2 images of box 'lab' (200 GiB of snapshots, about $10.00 a month): ansible-playbook images.yml -e "
        "name=lab -e prune_keep=0, or ansible-playbook teardown.yml -e name=lab -e delete_images=true, removes them."]


def test_teardown_with_delete_images_lists_them_before_removing_them():
    box = planner._Box({"instances": []}, "lab", ME)
    found = {"baked_images": [OLD, image("ami-alice", "2026-12-01T00:00:00Z", owner=ALICE)],
             "snapshots": {"snap-old": snapshot_tags()}}
    result = images.teardown_images(planner._base({"action": "teardown"}), {"delete_images": "true"}, found, box)
    assert result["changes"] == ["deregister_images"]
    assert (result["deregister_image_ids"], result["delete_snapshot_ids"]) == (["ami-old"], ["snap-old"])
    assert result["doomed"] == ["image ami-old (gpubox-lab-20261101-0000, 100 GiB, about $5.00 a month)"]


# --- bake.yml's plan (box_plan._plan_bake)

def box_instance(state="running", owner=ME, iid="i-0001", volume="vol-data", os_name="ubuntu24.04", name="lab"):
    mappings = [{"device_name": "/dev/sda1", "ebs": {"volume_id": "vol-root"}}]
    if volume:
        mappings.append({"device_name": "/dev/sdf", "ebs": {"volume_id": volume}})
    tags = {**identity.box_tags(name, owner["user_id"], owner["arn"]), "gpubox:ami": "ami-0123456789abcdef0",
            "gpubox:image": "dlami", "gpubox:ssh-user": "ubuntu", "Name": f"gpubox-{name}"}
    if os_name:
        tags["gpubox:os"] = os_name
    return {"instance_id": iid, "instance_type": "g5.xlarge", "state": {"name": state}, "architecture": "x86_64",
            "root_device_name": "/dev/sda1", "placement": {"availability_zone": "us-east-1a"},
            "public_ip_address": "54.1.2.3", "block_device_mappings": mappings, "tags": tags}


def bake(instances=(), settings=None, caller=ME, baked=()):
    found = {"region": "us-east-1", "errors": [], "caller": caller, "now": "2026-12-01T12:30:00+00:00",
             "instances": list(instances), "baked_images": list(baked)}
    return planner.plan({"action": "bake", "name": "lab", **(settings or {})}, found, FAMILIES, QUOTAS, OS_IMAGES)


@pytest.mark.parametrize("case, instances, settings, said", [
    ("no box", [], {}, "There is no box named 'lab' in us-east-1 to make an image of: launch and configure it first"),
    ("only a terminated one", [box_instance(state="terminated")], {}, "There is no box named 'lab'"),
    ("two instances", [box_instance(), box_instance(iid="i-0002")], {}, "gpubox will not pick one"),
    ("stopping", [box_instance(state="stopping")], {}, "Box 'lab' is stopping: wait until it is running or stopped"),
    ("pending", [box_instance(state="pending")], {}, "Box 'lab' is pending"),
    ("another owner's box", [box_instance(owner=ALICE)], {}, "belongs to AIDAALICE"),
    ("another owner's box, with allow_other_owner", [box_instance(owner=ALICE)], {"allow_other_owner": "true"},
     "gpubox makes images only of your own boxes"),
    ("no gpubox:os tag", [box_instance(os_name="")], {}, "does not say which OS it runs"),
    ("an OS gpubox does not know", [box_instance(os_name="windows")], {}, "(gpubox:os is 'windows')"),
])
def test_bake_refuses_before_anything_is_made(case, instances, settings, said):
    plan = bake(instances, settings)
    assert plan["changes"] == [] and "bake" not in plan, case
    assert len(plan["problems"]) == 1 and said in plan["problems"][0], (case, plan["problems"])
    assert plan["problems"][0].endswith("Nothing was created."), case


def test_bake_of_a_running_box_leaves_the_data_volume_out_and_says_it_reboots():
    plan = bake([box_instance()], baked=[{"name": "gpubox-lab-20261201-1230"}])
    assert plan["problems"] == [] and plan["changes"] == ["create_image"]
    made = plan["bake"]
    assert made["name"] == "gpubox-lab-20261201-1230-00"  # that minute's name is taken
    assert (made["instance_id"], made["running"], made["no_reboot"]) == ("i-0001", True, False)
    assert made["device_mapping"] == [{"device_name": "/dev/sdf", "no_device": True}]
    assert made["tags"] == {
        "gpubox:managed-by": "gpubox", "gpubox:name": "lab", "gpubox:owner": "AIDAME",
        "gpubox:owner-arn": ME["arn"], "Name": made["name"], "gpubox:role": "image", "gpubox:os": "ubuntu24.04",
        "gpubox:arch": "x86_64", "gpubox:source-instance": "i-0001", "gpubox:base-ami": "ami-0123456789abcdef0",
        "gpubox:base-image": "dlami"}
    said = " ".join(made["lines"])
    assert "Left out: the data volume vol-data (/dev/sdf" in said and "EC2 reboots it now" in said
    assert "a box launched from the image gets new ones" in said
    assert plan["record"]["instance_id"] == "i-0001" and plan["record"]["address"] == "54.1.2.3"


@pytest.mark.parametrize("state, settings, volume, said", [
    ("running", {"no_reboot": "true"}, "vol-data", "keeps running (no_reboot=true)"),
    ("stopped", {}, "vol-data", "is stopped: its disk is copied as it is"),
    ("stopped", {}, None, "has no data volume: the notebooks in its /data are on the root disk, so they go into the image"),
])
def test_bake_says_what_happens_to_the_box_and_its_notebooks(state, settings, volume, said):
    plan = bake([box_instance(state=state, volume=volume)], settings)
    assert plan["problems"] == [] and said in " ".join(plan["bake"]["lines"])
    assert plan["bake"]["running"] == (state == "running")
    assert plan["bake"]["no_reboot"] == bool(settings)
    # Without a data volume, /dev/sdf is still suppressed: nothing but the root disk goes into an image.
    assert plan["bake"]["device_mapping"] == [{"device_name": "/dev/sdf", "no_device": True}]


def test_every_disk_but_the_root_is_left_out():
    instance = box_instance()
    instance["block_device_mappings"].append({"device_name": "/dev/sdg", "ebs": {"volume_id": "vol-extra"}})
    assert [m["device_name"] for m in bake([instance])["bake"]["device_mapping"]] == ["/dev/sdf", "/dev/sdg"]


# --- The gather's reads (box_gather), with AWS's answers stubbed: what gpubox sends, and what it keeps

def client(service):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")


def aws_image(iid, name="lab", owner="AIDAME", role="image", created="2026-12-01T10:00:00.000Z"):
    tags = {"gpubox:managed-by": "gpubox", "gpubox:name": name, "gpubox:owner": owner, "gpubox:role": role,
            "gpubox:os": "ubuntu24.04"}
    return {"ImageId": iid, "Name": f"gpubox-{name}-20261201-1000", "State": "available", "Architecture": "x86_64",
            "CreationDate": created, "RootDeviceName": "/dev/sda1", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": f"snap-{iid[4:]}", "VolumeSize": 100}},
                                    {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}]}


def image_filters(owner, name=None):
    filters = [{"Name": "tag:gpubox:managed-by", "Values": ["gpubox"]}]
    if name:
        filters.append({"Name": "tag:gpubox:name", "Values": [name]})
    return filters + [{"Name": "tag:gpubox:role", "Values": ["image"]}, {"Name": "tag:gpubox:owner", "Values": [owner]}]


def test_images_are_read_by_your_exact_escaped_tags_and_look_alikes_are_dropped():
    ec2 = client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response("describe_images", {"Images": [
            aws_image("ami-1"), aws_image("ami-2", name="lab-data"), aws_image("ami-3", owner="AIDAME*"),
            aws_image("ami-4", role="data")]},
            {"Owners": ["self"], "Filters": image_filters("AIDAME\\*", "lab\\?")})
        assert gather.read_baked_images(ec2, "AIDAME*", "lab?") == []
        stub.add_response("describe_images", {"Images": [aws_image("ami-1"), aws_image("ami-2", name="lab-data"),
                                                         aws_image("ami-4", role="data")]},
                          {"Owners": ["self"], "Filters": image_filters("AIDAME", "lab")})
        found = gather.read_baked_images(ec2, "AIDAME", "lab")
    assert [i["id"] for i in found] == ["ami-1"]
    assert found[0]["snapshots"] == [{"id": "snap-1", "size": 100, "device": "/dev/sda1"}]
    assert (found[0]["created"], found[0]["tags"]["gpubox:os"]) == ("2026-12-01T10:00:00.000Z", "ubuntu24.04")


def test_snapshots_are_read_by_your_owner_tag():
    ec2 = client("ec2")
    snap = {"SnapshotId": "snap-1", "VolumeSize": 100, "Tags": [{"Key": "gpubox:managed-by", "Value": "gpubox"},
                                                               {"Key": "gpubox:owner", "Value": "AIDAME"}]}
    with Stubber(ec2) as stub:
        stub.add_response("describe_snapshots", {"Snapshots": [snap, {**snap, "SnapshotId": "snap-2", "Tags": []}]},
                          {"OwnerIds": ["self"], "Filters": [{"Name": "tag:gpubox:managed-by", "Values": ["gpubox"]},
                                                             {"Name": "tag:gpubox:owner", "Values": ["AIDAME"]}]})
        assert list(gather.read_snapshots(ec2, "AIDAME")) == ["snap-1"]


@pytest.mark.parametrize("action, ami, live, reads_images", [
    ("launch", "baked", False, True),
    ("launch", "baked", True, False),  # the box exists: it keeps its own image
    ("launch", "dlami", False, False),
    ("teardown", "dlami", True, True),  # to say what the box's images cost, or remove them
])
def test_a_launch_reads_your_images_only_for_ami_baked_and_a_new_box(action, ami, live, reads_images):
    clients = {s: client(s) for s in ("sts", "ec2", "ssm", "service-quotas")}
    instances = [{"InstanceId": "i-1", "InstanceType": "g5.xlarge", "State": {"Name": "running"},
                  "Tags": [{"Key": "gpubox:managed-by", "Value": "gpubox"}, {"Key": "gpubox:name", "Value": "lab"}]}]
    with Stubber(clients["sts"]) as sts_stub, Stubber(clients["ec2"]) as stub, Stubber(clients["ssm"]), \
            Stubber(clients["service-quotas"]):
        sts_stub.add_response("get_caller_identity", {"UserId": "AIDAME", "Account": "1", "Arn": "arn:aws:iam::1:user/me"})
        stub.add_response("describe_instances", {"Reservations": [{"Instances": instances}] if live else []})
        stub.add_response("describe_volumes", {"Volumes": []})
        if reads_images:
            stub.add_response("describe_images", {"Images": [aws_image("ami-1")]}, {
                "Owners": ["self"], "Filters": image_filters("AIDAME", "lab" if action == "teardown" else None)})
        # Every later read fails unstubbed, and is recorded: only whether the images were read matters here.
        found = gather.gather(clients.get, {"action": action, "name": "lab", "region": "us-east-1",
                                            "settings": {"ami": ami}}, {}, {})
        stub.assert_no_pending_responses()
    assert ("baked_images" in found) == reads_images
    assert not [e for e in found["errors"] if e["read"] == "baked images"]


def test_images_yml_reads_your_images_snapshots_and_every_live_instance():
    sts, ec2 = client("sts"), client("ec2")
    with Stubber(sts) as sts_stub, Stubber(ec2) as stub:
        sts_stub.add_response("get_caller_identity", {"UserId": "AIDAME", "Account": "1", "Arn": "arn:aws:iam::1:user/me"})
        stub.add_response("describe_instances", {"Reservations": []},
                          {"Filters": [{"Name": "tag:gpubox:managed-by", "Values": ["gpubox"]},
                                       {"Name": "instance-state-name", "Values": list(identity.LIVE_STATES)}]})
        stub.add_response("describe_images", {"Images": [aws_image("ami-1")]},
                          {"Owners": ["self"], "Filters": image_filters("AIDAME")})
        stub.add_response("describe_snapshots", {"Snapshots": []}, {"OwnerIds": ["self"], "Filters": [
            {"Name": "tag:gpubox:managed-by", "Values": ["gpubox"]}, {"Name": "tag:gpubox:owner", "Values": ["AIDAME"]}]})
        found = gather.gather({"sts": sts, "ec2": ec2}.get, {"action": "images", "name": "lab"}, {}, {})
    assert [i["id"] for i in found["baked_images"]] == ["ami-1"] and found["snapshots"] == {} and found["errors"] == []


# --- Review fixes: the root disk's size, pruning per box, left-over snapshots, teardown's pending images and clones

def test_ami_baked_returns_the_images_root_disk_size():
    big = {**image("ami-big", "2026-12-03T00:00:00Z", size=150),
           "snapshots": [{"id": "snap-data", "size": 500, "device": "/dev/sdg"},
                         {"id": "snap-root", "size": 150, "device": "/dev/sda1"}]}
    picked, problem = images.choose_baked_image([OLD, big], "ubuntu24.04", "x86_64", ME["user_id"])
    assert problem == "" and picked["id"] == "ami-big" and picked["root_size"] == 150
    # Read by the gather (root_size) when the snapshots do not say which is the root.
    assert images.root_size_gib({"root_device_name": "/dev/xvda", "root_size": 80, "snapshots": []}) == 80


def test_the_gather_reads_the_root_snapshots_size():
    ec2 = client("ec2")
    answer = aws_image("ami-1")
    answer["BlockDeviceMappings"].insert(0, {"DeviceName": "/dev/sdg", "Ebs": {"SnapshotId": "snap-x", "VolumeSize": 9}})
    with Stubber(ec2) as stub:
        stub.add_response("describe_images", {"Images": [answer]}, {"Owners": ["self"], "Filters": image_filters("AIDAME")})
        [found] = gather.read_baked_images(ec2, "AIDAME")
    assert found["root_size"] == 100


def test_prune_keeps_the_newest_per_box_too():
    other = image("ami-other", "2026-10-01T00:00:00Z", box="other")
    gone, _ = images.prune_selection([OLD, NEW, other], 1)
    assert [i["id"] for i in gone] == ["ami-old"]  # box other's only image is not pruned for box lab's newer ones


def image_snapshot(box="lab", owner=ME, role="image", size=40, state="completed", description=""):
    tags = {**identity.box_tags(box, owner["user_id"], owner["arn"]), identity.ROLE: role}
    return {"tags": tags, "size": size, "state": state, "description": description}


LEFT = {"snap-left": image_snapshot(), "snap-old": snapshot_tags(),
        "snap-other-box": image_snapshot(box="other", size=10),
        "snap-alice": image_snapshot(owner=ALICE), "snap-data": image_snapshot(role="data"),
        "snap-pending": image_snapshot(state="pending"),
        "snap-being-made": image_snapshot(description="Created by CreateImage(i-1) for ami-new")}


def test_left_over_snapshots_are_only_yours_of_no_registered_image():
    left = images.left_over_snapshots([OLD, NEW], LEFT, ME["user_id"])
    assert [s["id"] for s in left] == ["snap-left", "snap-other-box"]
    assert [s["id"] for s in images.left_over_snapshots([OLD, NEW], LEFT, ME["user_id"], "lab")] == ["snap-left"]


def test_images_yml_lists_left_over_snapshots_and_prunes_them_after_a_prompt():
    found = {"baked_images": [OLD, NEW], "snapshots": LEFT}
    listed = images.plan_images(planner._base({"action": "images"}), {}, found, ME)
    text = "\n".join(listed["lines"])
    assert "2 left-over image snapshots" in text and "50 GiB, about $2.50 a month" in text
    assert "snapshot snap-left of box 'lab' (40 GiB, about $2.00 a month, left over" in text
    assert listed["changes"] == []
    pruned = images.plan_images(planner._base({"action": "images"}), {"prune_keep": "1"}, found, ME)
    assert pruned["changes"] == ["deregister_images"]
    assert pruned["image_removals"] == [{"image_id": "ami-old", "snapshot_ids": ["snap-old"]}]
    assert pruned["delete_left_over_snapshot_ids"] == ["snap-left", "snap-other-box"]
    assert "1 image and their snapshots and 2 left-over snapshots" in pruned["removed_summary"]
    assert any("ami-old" in p for p in pruned["prompt"]) and any("snap-left" in p for p in pruned["prompt"])
    # Only left-over snapshots: still a removal, with its prompt.
    only = images.plan_images(planner._base({"action": "images"}), {"prune_keep": "5"}, found, ME)
    assert only["changes"] == ["deregister_images"] and only["image_removals"] == [] and len(only["prompt"]) == 2
    # -e name=other: only box other's.
    of = images.plan_images(planner._base({"action": "images"}), {"prune_keep": "5", "images_of": "other"}, found, ME)
    assert of["delete_left_over_snapshot_ids"] == ["snap-other-box"]


def test_each_image_is_removed_with_its_own_snapshots():
    result = planner._base({"action": "images"})
    images.plan_removal(result, [OLD, MID], {"snap-old": snapshot_tags(), "snap-mid": snapshot_tags()}, "AIDAME", 0.05)
    assert result["image_removals"] == [{"image_id": "ami-old", "snapshot_ids": ["snap-old"]},
                                        {"image_id": "ami-mid", "snapshot_ids": ["snap-mid"]}]


def test_teardown_with_delete_images_keeps_one_being_made_and_sees_clones_under_other_names():
    box = planner._Box({"instances": []}, "lab", ME)
    pending = image("ami-p", "2026-12-02T00:00:00Z", state="pending")
    found = {"baked_images": [OLD, pending], "snapshots": {"snap-old": snapshot_tags(), "snap-left": image_snapshot()},
             "instances": [], "live_instances": [
                 {"instance_id": "i-clone", "image_id": "ami-old", "state": {"name": "running"}}]}
    result = images.teardown_images(planner._base({"action": "teardown"}), {"delete_images": "true"}, found, box)
    assert result["deregister_image_ids"] == ["ami-old"] and result["delete_left_over_snapshot_ids"] == ["snap-left"]
    assert any("Kept image ami-p" in k and "still being made" in k for k in result["kept"])
    assert any("ami-old" in d and "in use by i-clone" in d for d in result["doomed"])
    assert any("snap-left" in d for d in result["doomed"])
    kept = images.teardown_images(planner._base({"action": "teardown"}), {}, found, box)
    assert kept["changes"] == [] and any("1 left-over image snapshot" in k for k in kept["kept"])


def test_teardown_with_delete_images_reads_every_live_instance():
    clients = {s: client(s) for s in ("sts", "ec2")}
    live = [{"Name": "tag:gpubox:managed-by", "Values": ["gpubox"]},
            {"Name": "instance-state-name", "Values": list(identity.LIVE_STATES)}]
    with Stubber(clients["sts"]) as sts_stub, Stubber(clients["ec2"]) as stub:
        sts_stub.add_response("get_caller_identity", {"UserId": "AIDAME", "Account": "1", "Arn": "arn:aws:iam::1:user/me"})
        stub.add_response("describe_instances", {"Reservations": []})
        stub.add_response("describe_volumes", {"Volumes": []})
        stub.add_response("describe_images", {"Images": []})
        stub.add_response("describe_snapshots", {"Snapshots": []})
        stub.add_response("describe_instances", {"Reservations": [{"Instances": [
            {"InstanceId": "i-clone", "ImageId": "ami-1", "State": {"Name": "running"},
             "Tags": [{"Key": "gpubox:managed-by", "Value": "gpubox"}, {"Key": "gpubox:name", "Value": "clone"}]}]}]},
            {"Filters": live})
        found = gather.gather(clients.get, {"action": "teardown", "name": "lab", "region": "us-east-1",
                                            "settings": {"delete_images": True}}, {}, {})
        stub.assert_no_pending_responses()
    assert [i["instance_id"] for i in found["live_instances"]] == ["i-clone"]


def test_bake_says_the_login_users_files_go_into_the_image():
    said = " ".join(bake([box_instance()])["bake"]["lines"])
    assert "ubuntu's ~/.aws credentials, git and Hugging Face tokens, shell history" in said
