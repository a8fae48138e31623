"""bake.yml, images.yml and teardown.yml -e delete_images=true against the emulator.

moto makes an image from an instance at once (available, one snapshot), but does not implement CreateImage's tags for
snapshots: it fails the request. EC2 tags the snapshots as it makes them, and gpubox relies on that (its IAM policy
allows no tags afterwards), so these tests put a small proxy in front of the recording one that plays EC2's part: it
takes the snapshot tags out of the request, and once moto has made the image, writes them on its snapshots. moto also
ignores CreateImage's block device mappings: what gpubox asks for (the data volume left out) is checked on the request.
"""

import re

from support.gpubox import MY_CIDR, UBUNTU_AMI, free_port
from support.snapshot_tags import snapshot_tags as tags_proxy

OTHER_OWNER = "AIDAOTHEROWNER"


def snapshot_tags(gpubox, proxy, aws):
    """gpubox's playbooks through support/snapshot_tags.py's proxy, in front of the recording one."""
    return tags_proxy(gpubox, proxy.url, aws.ec2)


def images(aws, **tags):
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    return sorted(aws.ec2.describe_images(Owners=["self"], Filters=filters)["Images"], key=lambda i: i["CreationDate"])


def snapshot_ids(image):
    return [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]


def existing_snapshots(aws, ids):
    found = aws.ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": ids}])["Snapshots"]
    return sorted(s["SnapshotId"] for s in found)


def another_owners_image(aws):
    """An image of another IAM identity's box of the same name, tagged as gpubox would, snapshots included."""
    run = aws.ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1, InstanceType="g5.xlarge")
    tags = [{"Key": k, "Value": v} for k, v in {
        "gpubox:managed-by": "gpubox", "gpubox:name": "lab", "gpubox:owner": OTHER_OWNER, "gpubox:role": "image",
        "gpubox:os": "ubuntu24.04", "gpubox:arch": "x86_64"}.items()]
    image_id = aws.ec2.create_image(InstanceId=run["Instances"][0]["InstanceId"], Name="gpubox-lab-20260101-0000",
                                    TagSpecifications=[{"ResourceType": "image", "Tags": tags}])["ImageId"]
    image = aws.ec2.describe_images(ImageIds=[image_id])["Images"][0]
    aws.ec2.create_tags(Resources=snapshot_ids(image), Tags=tags)
    return image


def test_bake_list_prune_and_remove_images(gpubox, aws, proxy):
    with snapshot_tags(gpubox, proxy, aws) as shim:
        assert gpubox.launch(name="lab").rc == 0
        instance = aws.instance("lab")
        [volume] = aws.data_volumes("lab")
        theirs = another_owners_image(aws)

        # A running box: EC2 would reboot it, so bake asks first; without a yes (no terminal here) nothing is made.
        unsure = gpubox.run("bake.yml", name="lab", ssh_host="127.0.0.1", ssh_port=free_port(), instance_wait_timeout=2)
        assert unsure.rc != 0
        assert unsure.said("Bake cancelled: nothing was changed")
        assert shim.asked == [] and images(aws, **{"gpubox:owner": instance_tags(instance)["gpubox:owner"]}) == []
        assert aws.instance("lab")["State"]["Name"] == "running"

        # Confirmed, and its SSH does not answer (nothing listens there): the image is made all the same.
        first = gpubox.run("bake.yml", name="lab", ssh_host="127.0.0.1", ssh_port=free_port(), instance_wait_timeout=2,
                           confirm=True)
        assert first.rc == 0, first.text
        assert first.said("Left out: the data volume", volume["VolumeId"], "/dev/sdf")
        assert first.said("is running: EC2 reboots it now")
        assert first.said("~/.aws credentials, git and Hugging Face tokens, shell history")
        assert first.said("did not answer SSH", "tagged with its OS")
        [made] = images(aws, **{"gpubox:owner": instance_tags(instance)["gpubox:owner"]})
        tags = aws.tags(made)
        assert re.fullmatch(r"gpubox-lab-\d{8}-\d{4}", made["Name"]), made["Name"]
        assert {k: tags[k] for k in ("gpubox:managed-by", "gpubox:name", "gpubox:role", "gpubox:os", "gpubox:arch",
                                     "gpubox:source-instance", "gpubox:installed")} == {
            "gpubox:managed-by": "gpubox", "gpubox:name": "lab", "gpubox:role": "image", "gpubox:os": "ubuntu24.04",
            "gpubox:arch": "x86_64", "gpubox:source-instance": instance["InstanceId"], "gpubox:installed": "unknown"}
        assert tags["gpubox:owner"] == instance_tags(instance)["gpubox:owner"] and tags["gpubox:owner-arn"]
        assert first.said(f"Image {made['ImageId']} ({made['Name']}) of box 'lab' is available", "GiB", "a month")
        # What gpubox asked EC2 for: the data volume left out, a reboot, and the tags on the snapshots as well.
        [asked] = shim.asked
        mappings = {v: k.rsplit(".", 1)[0] for k, v in asked.items() if re.fullmatch(r"BlockDeviceMapping\.\d+\.DeviceName", k)}
        assert list(mappings) == ["/dev/sdf"] and asked[f"{mappings['/dev/sdf']}.NoDevice"] == ""
        assert asked.get("NoReboot", "false") == "false"
        assert sorted(v for k, v in asked.items() if k.endswith(".ResourceType")) == ["image", "snapshot"]
        assert all(aws.tags(s)["gpubox:owner"] == tags["gpubox:owner"]
                   for s in aws.ec2.describe_snapshots(SnapshotIds=snapshot_ids(made))["Snapshots"])

        # -e ami=baked: a new box from your newest image for the OS, tagged as such.
        assert gpubox.launch(name="clone", ami="baked").rc == 0
        clone = aws.instance("clone")
        assert (clone["ImageId"], instance_tags(clone)["gpubox:image"]) == (made["ImageId"], "baked")

        # A stopped box: nothing to read over SSH, no reboot, no prompt. A CreateImage that fails says the image may
        # still be being made and where to look, rather than invite a second bake.
        assert gpubox.run("stop.yml", name="lab").rc == 0
        shim.refuse("CreateImage", "InvalidParameterValue", "the request failed", times=1)
        failed = gpubox.run("bake.yml", name="lab")
        assert failed.rc != 0
        assert failed.said("did not become available", "may still be being made", "images.yml -e name=lab",
                           "Do not bake again until it is available")
        # A second image the same minute gets another name.
        second = gpubox.run("bake.yml", name="lab")
        assert second.rc == 0, second.text
        assert second.said("Box 'lab' is stopped: its disk is copied as it is")
        older, newer = images(aws, **{"gpubox:owner": tags["gpubox:owner"]})
        assert older["ImageId"] == made["ImageId"] and newer["Name"] != made["Name"]

        # A snapshot with your image tags that no image uses (a removal interrupted after a deregistration): listed
        # with what it costs, and deleted by the prune.
        left = left_over_snapshot(aws, volume["VolumeId"], tags)
        # The box launched from the older image: pruning still deregisters it, and says so.
        clone = clone["InstanceId"]
        listed = gpubox.run("images.yml")
        assert listed.rc == 0, listed.text
        assert listed.said("NAME", "IMAGE ID", "SIZE GIB", "EST. $/MONTH")
        assert listed.said(made["Name"], made["ImageId"], "lab", "ubuntu24.04", "x86_64", "available", clone)
        assert listed.said(newer["Name"], newer["ImageId"])
        assert not listed.said(theirs["ImageId"])
        assert listed.said("2 images", "a month")
        assert listed.said("1 left-over image snapshot", "a month", "-e prune_keep=N deletes it")
        assert listed.said(f"snapshot {left} of box 'lab'", "GiB", "a month, left over")

        # The prune asks first, listing what goes; without a yes (no terminal) nothing is removed.
        unsure = gpubox.run("images.yml", prune_keep=1)
        assert unsure.rc != 0 and unsure.said("Prune cancelled: nothing was removed")
        assert len(images(aws, **{"gpubox:owner": tags["gpubox:owner"]})) == 2
        assert existing_snapshots(aws, [left]) == [left]

        pruned = gpubox.run("images.yml", prune_keep=1, confirm=True)
        assert pruned.rc == 0, pruned.text
        assert pruned.said(made["ImageId"], f"in use by {clone}", "deregistered all the same")
        assert pruned.said("Removed 1 image and their snapshots and 1 left-over snapshot")
        assert [i["ImageId"] for i in images(aws, **{"gpubox:owner": tags["gpubox:owner"]})] == [newer["ImageId"]]
        assert existing_snapshots(aws, snapshot_ids(made) + [left]) == []

        # Teardown keeps the box's images unless asked, and says what they cost; then removes them when asked.
        kept = gpubox.run("teardown.yml", name="lab", confirm=True)
        assert kept.rc == 0, kept.text
        assert kept.said("Kept 1 image of box 'lab'", "delete_images=true")
        # With delete_images: the image, each of its snapshots after it (EC2 may hold one for a moment: retried), and
        # the box's left-over snapshots.
        left = left_over_snapshot(aws, volume["VolumeId"], tags)
        proxy.refuse("DeleteSnapshot", "InvalidSnapshot.InUse", "The snapshot is in use by an image.", times=1)
        mark = len(proxy.calls)
        gone = gpubox.run("teardown.yml", name="lab", confirm=True, delete_images=True)
        assert gone.rc == 0, gone.text
        assert images(aws, **{"gpubox:owner": tags["gpubox:owner"]}) == []
        assert existing_snapshots(aws, snapshot_ids(newer) + [left]) == []
        actions = [a for _, a in proxy.calls[mark:] if a in ("DeregisterImage", "DeleteSnapshot")]
        # The image first, then its snapshots (one refused once, then retried), then the left-over one.
        assert actions == ["DeregisterImage"] + ["DeleteSnapshot"] * (len(snapshot_ids(newer)) + 2), actions

    # Another owner's image of a box of the same name, and its snapshot, were never touched.
    assert [i["ImageId"] for i in images(aws, **{"gpubox:owner": OTHER_OWNER})] == [theirs["ImageId"]]
    assert existing_snapshots(aws, snapshot_ids(theirs)) == snapshot_ids(theirs)


def left_over_snapshot(aws, volume_id, image_tags):
    """A snapshot with the image's gpubox tags that no image uses (as a removal interrupted after a deregistration
    leaves)."""
    keep = ("gpubox:managed-by", "gpubox:name", "gpubox:owner", "gpubox:owner-arn", "gpubox:role", "gpubox:os")
    return aws.ec2.create_snapshot(VolumeId=volume_id, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": k, "Value": image_tags[k]} for k in keep]}])["SnapshotId"]


def instance_tags(instance):
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def test_bake_refuses_a_box_that_does_not_exist(gpubox, aws):
    before = aws.ec2.describe_images(Owners=["self"])["Images"]
    refused = gpubox.run("bake.yml", name="nope", ssh_cidr=MY_CIDR)
    assert refused.rc != 0
    assert refused.said("There is no box named 'nope'", "launch.yml -e name=nope", "Nothing was created")
    assert aws.ec2.describe_images(Owners=["self"])["Images"] == before
