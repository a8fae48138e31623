"""launch.yml against the emulator: what it creates, and that re-runs change nothing."""

import http.server
import os
import stat
import threading

from support.gpubox import MY_CIDR, UBUNTU_AMI, free_port


def test_launch_creates_a_locked_down_gpu_box(gpubox, aws):
    result = gpubox.launch()
    assert result.rc == 0, result.text

    inst = aws.instance()
    tags = aws.tags(inst)
    assert inst["InstanceType"] == "g5.xlarge"
    assert inst["ImageId"] == UBUNTU_AMI
    assert tags["Name"] == "gpubox-gpubox"
    assert tags["gpubox:name"] == "gpubox"
    assert tags["gpubox:managed-by"] == "gpubox"
    assert tags["gpubox:ami"] == UBUNTU_AMI
    assert tags["gpubox:ssh-user"] == "ubuntu"
    assert tags["gpubox:image"] == "custom"
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    shutdown = aws.ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="instanceInitiatedShutdownBehavior")
    assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"

    # Root and data volumes: encrypted gp3 of the configured sizes; data kept on termination.
    attached = {a["DeviceName"]: a for a in inst["BlockDeviceMappings"]}
    root = aws.ec2.describe_volumes(VolumeIds=[attached["/dev/sda1"]["Ebs"]["VolumeId"]])["Volumes"][0]
    assert (root["Size"], root["VolumeType"], root["Encrypted"]) == (100, "gp3", True)
    [data] = aws.data_volumes()
    assert (data["Size"], data["VolumeType"], data["Encrypted"]) == (50, "gp3", True)
    assert data["Attachments"][0]["InstanceId"] == inst["InstanceId"]
    assert data["Attachments"][0]["Device"] == "/dev/sdf"
    assert data["AvailabilityZone"] == inst["Placement"]["AvailabilityZone"]

    # Exactly one inbound rule: SSH from the given address. Nothing opens Jupyter's port.
    [group] = aws.groups()
    assert [g["GroupId"] for g in inst["SecurityGroups"]] == [group["GroupId"]]
    rules = group["IpPermissions"]
    assert len(rules) == 1
    assert (rules[0]["IpProtocol"], rules[0]["FromPort"], rules[0]["ToPort"]) == ("tcp", 22, 22)
    assert [r["CidrIp"] for r in rules[0]["IpRanges"]] == [MY_CIDR]
    assert not rules[0].get("Ipv6Ranges")
    # Outbound stays open: the box fetches drivers and packages.
    assert group["IpPermissionsEgress"][0]["IpProtocol"] == "-1"

    # The key pair is the user's own key, generated with a private file only they can read.
    private = gpubox.home / ".ssh" / "id_ed25519"
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    [key] = aws.keys()
    assert key["KeyName"] == inst["KeyName"] == "gpubox-gpubox"
    assert result.said("g5.xlarge", "A10G", "$1.006/h")
    assert result.said(f"ssh -i {private} ubuntu@{inst['PublicIpAddress']}")


def test_second_identical_launch_changes_nothing(gpubox, aws):
    assert gpubox.launch().rc == 0
    private = gpubox.home / ".ssh" / "id_ed25519"
    key_before = private.read_bytes()

    again = gpubox.launch()
    assert again.rc == 0, again.text
    assert again.changed == 0
    assert len(aws.instances()) == 1
    assert private.read_bytes() == key_before


def test_rerun_keeps_the_recorded_ami_when_latest_moves(gpubox, aws):
    assert gpubox.launch().rc == 0
    first = aws.instance()["InstanceId"]
    # A newer "latest" image: the box must stay as it is, not gain a second instance.
    moved = gpubox.launch(ami="ami-35e92e4c")
    assert moved.rc == 0, moved.text
    assert moved.changed == 0
    inst = aws.instance()
    assert (inst["InstanceId"], inst["ImageId"]) == (first, UBUNTU_AMI)


def test_an_existing_private_key_is_never_overwritten(gpubox, aws):
    ssh = gpubox.home / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "id_ed25519").write_text("my own private key\n")
    (ssh / "id_ed25519.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3Kp1y0rQk5wq6cZ2cVt3m1a8C0Jd6nYbG2W1Jx3fQ me@laptop\n")
    assert gpubox.launch().rc == 0
    assert (ssh / "id_ed25519").read_text() == "my own private key\n"
    assert aws.keys()[0]["KeyName"] == "gpubox-gpubox"


def test_two_names_live_side_by_side(gpubox, aws):
    assert gpubox.launch(name="alpha").rc == 0
    assert gpubox.launch(name="beta", type="g4dn.xlarge").rc == 0
    assert aws.instance("alpha")["InstanceType"] == "g5.xlarge"
    assert aws.instance("beta")["InstanceType"] == "g4dn.xlarge"
    assert {g["GroupName"] for g in aws.groups()} == {"gpubox-alpha", "gpubox-beta"}
    assert len(aws.data_volumes("alpha")) == len(aws.data_volumes("beta")) == 1

    gone = gpubox.run("teardown.yml", name="alpha", confirm=True)
    assert gone.rc == 0, gone.text
    assert aws.instances("alpha") == []
    assert aws.instance("beta")["State"]["Name"] == "running"
    assert {g["GroupName"] for g in aws.groups()} == {"gpubox-beta"}
    assert [k["KeyName"] for k in aws.keys()] == ["gpubox-beta"]


def test_a_new_type_needs_resize_and_then_keeps_the_instance(gpubox, aws):
    assert gpubox.launch().rc == 0
    before = aws.snapshot()
    refused = gpubox.launch(type="g6.xlarge")
    assert refused.rc != 0
    assert refused.said("already exists as a g5.xlarge", "-e resize=true")
    assert aws.snapshot() == before
    assert aws.instance()["InstanceType"] == "g5.xlarge"

    resized = gpubox.launch(type="g6.xlarge", resize=True)
    assert resized.rc == 0, resized.text
    inst = aws.instance()
    assert inst["InstanceId"] == before["instances"][0]
    assert (inst["InstanceType"], inst["State"]["Name"]) == ("g6.xlarge", "running")


def test_without_data_volume(gpubox, aws):
    assert gpubox.launch(data_volume_size=0).rc == 0
    assert aws.data_volumes() == []


def test_plain_amazon_linux_comes_from_its_public_ssm_parameter(gpubox, aws):
    result = gpubox.launch(ami="plain", os="al2023")
    assert result.rc == 0, result.text
    ssm = aws.ssm.get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
    inst = aws.instance()
    assert inst["ImageId"] == ssm["Parameter"]["Value"]
    assert aws.tags(inst)["gpubox:ssh-user"] == "ec2-user"


def test_volta_types_still_offered_launch_on_a_plain_image_and_say_why(gpubox, aws):
    # moto still offers p3dn.24xlarge in two zones of us-east-1.
    result = gpubox.launch(type="p3dn.24xlarge", ami="dlami")
    # moto has no Canonical SSM parameters, so the switch shows in the parameter it reads.
    assert result.said("p3dn.24xlarge has NVIDIA V100 32GB GPUs (Volta)", "plain ubuntu24.04 AMI")
    assert result.said("/aws/service/canonical/ubuntu/server/24.04/")
    assert result.rc != 0
    assert aws.instances() == []

    explicit = gpubox.launch(type="p3dn.24xlarge", ami=UBUNTU_AMI)
    assert explicit.rc == 0, explicit.text
    inst = aws.instance()
    assert inst["Placement"]["AvailabilityZone"] in {"us-east-1c", "us-east-1d"}


def test_ssh_source_defaults_to_the_callers_public_ip(gpubox, aws):
    class WhatIsMyIp(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"198.51.100.23\n")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), WhatIsMyIp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = gpubox.launch(ssh_cidr="", ssh_ip_lookup_url=f"http://127.0.0.1:{server.server_port}/")
    finally:
        server.shutdown()
    assert result.rc == 0, result.text
    [group] = aws.groups()
    assert [r["CidrIp"] for r in group["IpPermissions"][0]["IpRanges"]] == ["198.51.100.23/32"]


def test_launch_with_no_endpoint_setting_uses_boto3s_own_configuration(gpubox, aws):
    # aws_endpoint_url empty, as for real AWS: boto3 finds moto through its per-service variables instead.
    services = ["EC2", "SSM", "STS", "SERVICE_QUOTAS"]
    env = {"AWS_ENDPOINT_URL": "", **{f"AWS_ENDPOINT_URL_{s}": aws.url for s in services}}
    result = gpubox.launch(env=env, ami="plain", os="al2023")
    assert result.rc == 0, result.text
    ssm = aws.ssm.get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
    assert aws.instance()["ImageId"] == ssm["Parameter"]["Value"]


def test_launch_says_what_to_check_when_the_box_does_not_answer_ssh(gpubox, aws):
    closed = free_port()  # nothing listens there
    result = gpubox.launch(configure=True, ssh_host="127.0.0.1", ssh_port=closed, instance_wait_timeout=3)
    assert result.rc != 0
    instance_id = aws.instance()["InstanceId"]
    assert result.said(f"at 127.0.0.1:{closed} did not answer SSH within 3 s", "your public IP may have changed",
                       "run launch.yml again", f"describe-instance-status --instance-ids {instance_id}",
                       f"get-console-output --latest --instance-id {instance_id}", "Raise instance_wait_timeout")
