"""stop.yml, start.yml, status.yml and teardown.yml against the emulator."""

from support.gpubox import UBUNTU_AMI


def test_stop_then_start_then_launch_again(gpubox, aws):
    assert gpubox.launch().rc == 0
    instance_id = aws.instance()["InstanceId"]

    stopped = gpubox.run("stop.yml")
    assert stopped.rc == 0, stopped.text
    assert aws.instance()["State"]["Name"] == "stopped"
    assert stopped.said("is stopped", "Still billed while stopped", "150 GiB")

    status = gpubox.run("status.yml")
    assert status.rc == 0, status.text
    assert status.said("gpubox", "g5.xlarge", "1x A10G", "stopped", "0 (disks only)")

    started = gpubox.run("start.yml")
    assert started.rc == 0, started.text
    inst = aws.instance()
    assert (inst["InstanceId"], inst["State"]["Name"]) == (instance_id, "running")
    assert started.said(f"is running at {inst['PublicIpAddress']}")
    assert started.said(f"SSH: ssh -i {gpubox.home}/.ssh/id_ed25519 ubuntu@{inst['PublicIpAddress']}")

    # Launch on a stopped box starts it, and touches nothing else.
    assert gpubox.run("stop.yml").rc == 0
    relaunch = gpubox.launch()
    assert relaunch.rc == 0, relaunch.text
    inst = aws.instance()
    assert inst["State"]["Name"] == "running"
    assert relaunch.said(f"ubuntu@{inst['PublicIpAddress']}"), relaunch.text
    assert gpubox.launch().changed == 0


def test_status_lists_every_box_with_price_and_uptime(gpubox, aws):
    assert gpubox.launch(name="alpha").rc == 0
    assert gpubox.launch(name="beta", type="g6e.xlarge").rc == 0
    status = gpubox.run("status.yml")
    assert status.rc == 0, status.text
    header = [m for m in status.messages if m.startswith("NAME")]
    assert header and "EST. $/H" in header[0] and "UPTIME" in header[0]
    alpha_ip = aws.instance("alpha")["PublicIpAddress"]
    assert status.said("alpha", "g5.xlarge", "1x A10G", "running", alpha_ip, "1.01")
    assert status.said("beta", "g6e.xlarge", "1x L40S", "running", "1.86")


def test_status_with_no_boxes(gpubox, aws):
    status = gpubox.run("status.yml")
    assert status.rc == 0
    assert status.said("No gpubox boxes in this region.")


def test_stop_of_a_box_that_does_not_exist_says_so(gpubox, aws):
    result = gpubox.run("stop.yml", name="nope")
    assert result.rc != 0
    assert result.said("There is no box named 'nope'", "status.yml")


def test_teardown_keeps_the_data_and_the_next_launch_reattaches_it(gpubox, aws):
    assert gpubox.launch().rc == 0
    [volume] = aws.data_volumes()
    zone = volume["AvailabilityZone"]

    gone = gpubox.run("teardown.yml", confirm=True)
    assert gone.rc == 0, gone.text
    assert aws.instances() == []
    assert aws.groups() == []
    assert aws.keys() == []
    [kept] = aws.data_volumes()
    assert kept["VolumeId"] == volume["VolumeId"]
    assert gone.said("Kept data volume", volume["VolumeId"], "delete_data=true")

    again = gpubox.run("teardown.yml", confirm=True)
    assert again.rc == 0, again.text
    assert again.said("Nothing of box 'gpubox' is left to remove")

    back = gpubox.launch()
    assert back.rc == 0, back.text
    inst = aws.instance()
    assert inst["Placement"]["AvailabilityZone"] == zone
    [reattached] = aws.data_volumes()
    assert reattached["VolumeId"] == volume["VolumeId"]
    assert reattached["Attachments"][0]["InstanceId"] == inst["InstanceId"]

    wiped = gpubox.run("teardown.yml", confirm=True, delete_data=True)
    assert wiped.rc == 0, wiped.text
    assert aws.data_volumes() == []


def test_teardown_asks_first_and_removes_nothing_without_a_yes(gpubox, aws):
    assert gpubox.launch().rc == 0
    before = aws.snapshot()
    refused = gpubox.run("teardown.yml")  # no terminal to answer the prompt
    assert refused.rc != 0
    assert refused.said("Teardown cancelled: nothing was removed")
    assert aws.snapshot() == before


def test_teardown_never_touches_what_gpubox_did_not_create(gpubox, aws):
    # The user's own resources, some with look-alike names.
    vpc = aws.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    own_group = aws.ec2.create_security_group(GroupName="my-web", Description="mine", VpcId=vpc)["GroupId"]
    aws.ec2.create_key_pair(KeyName="gpubox-mine")
    own = aws.ec2.run_instances(ImageId=UBUNTU_AMI, MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
                                KeyName="gpubox-mine", SecurityGroupIds=[own_group],
                                TagSpecifications=[{"ResourceType": "instance",
                                                    "Tags": [{"Key": "Name", "Value": "gpubox-gpubox"}]}])
    own_id = own["Instances"][0]["InstanceId"]
    own_volume = aws.ec2.create_volume(AvailabilityZone="us-east-1a", Size=5,
                                       TagSpecifications=[{"ResourceType": "volume",
                                                           "Tags": [{"Key": "gpubox:name", "Value": "gpubox"}]}])["VolumeId"]

    assert gpubox.launch().rc == 0
    gone = gpubox.run("teardown.yml", confirm=True, delete_data=True)
    assert gone.rc == 0, gone.text

    mine = aws.ec2.describe_instances(InstanceIds=[own_id])["Reservations"][0]["Instances"][0]
    assert mine["State"]["Name"] == "running"
    assert {g["GroupId"] for g in aws.groups()} == {own_group}
    assert [k["KeyName"] for k in aws.keys()] == ["gpubox-mine"]
    assert [v["VolumeId"] for v in aws.ec2.describe_volumes(VolumeIds=[own_volume])["Volumes"]] == [own_volume]


def test_configure_of_a_box_that_is_not_running_says_so(gpubox, aws):
    result = gpubox.run("configure.yml", name="sleeping")
    assert result.rc != 0
    assert result.said("Box 'sleeping' is not running", "start.yml -e name=sleeping")
