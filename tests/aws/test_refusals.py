"""Every bad input fails with a message that names the problem and the fix, and creates nothing."""

import pytest

from support.gpubox import ARM_AMI


def refused(gpubox, aws, *fragments, playbook="launch.yml", env=None, **settings):
    before = aws.snapshot()
    if playbook == "launch.yml":
        result = gpubox.launch(env=env, **settings)
    else:
        result = gpubox.run(playbook, env=env, **settings)
    assert result.rc != 0, f"expected a refusal, got success:\n{result.text}"
    assert result.said(*fragments), result.text
    assert aws.snapshot() == before, "a refused command created something"
    return result


def test_unknown_type_names_the_nearest_ones(gpubox, aws):
    refused(gpubox, aws, "'g5.xlarg' is not a GPU instance type gpubox knows", "Did you mean g5.xlarge",
            "Nothing was created", type="g5.xlarg")


def test_non_gpu_type_is_refused_unless_allowed(gpubox, aws):
    refused(gpubox, aws, "'t3.micro' is not a GPU instance type", "allow_non_gpu=true", type="t3.micro")
    allowed = gpubox.launch(type="t3.micro", allow_non_gpu=True)
    assert allowed.rc == 0, allowed.text
    assert aws.instance()["InstanceType"] == "t3.micro"


def test_amd_gpus_are_refused(gpubox, aws):
    refused(gpubox, aws, "g4ad.xlarge has AMD Radeon Pro V520 GPUs", "g4dn.xlarge", type="g4ad.xlarge")


@pytest.mark.parametrize("retired", ["p3.2xlarge", "p2.xlarge", "g3.4xlarge"])
def test_retired_type_names_current_ones_and_the_command(gpubox, aws, retired):
    result = refused(gpubox, aws, f"{retired} is retired: EC2 no longer offers it in us-east-1",
                     "Nearest current types:", "GiB GPU memory", "FP32 TFLOP/s",
                     "Run instead: ansible-playbook launch.yml -e name=gpubox -e type=", type=retired)
    if retired == "p3.2xlarge":
        assert result.said("g4dn.xlarge (1x NVIDIA T4, 16 GiB GPU memory, 8.1 FP32 TFLOP/s")


def test_retired_type_is_substituted_only_when_asked(gpubox, aws):
    result = gpubox.launch(type="p3.2xlarge", substitute=True)
    assert result.rc == 0, result.text
    assert result.said("p3.2xlarge is not offered in us-east-1; launching g4dn.xlarge instead")
    assert aws.instance()["InstanceType"] == "g4dn.xlarge"


def test_type_not_offered_in_the_region(gpubox, aws):
    # moto lists no p5e offerings in us-east-1.
    refused(gpubox, aws, "p5e.48xlarge is not offered in us-east-1", "Run instead", type="p5e.48xlarge")


@pytest.mark.parametrize("name", ["My Box", "-x", "a" * 40, "box_1", "UPPER"])
def test_malformed_name(gpubox, aws, name):
    refused(gpubox, aws, f"name '{name}' is not a valid box name", "-e name=thesis-gpu", name=name)


@pytest.mark.parametrize("cidr", ["203.0.113.300/32", "my-ip", "10.0.0.0/99"])
def test_invalid_cidr(gpubox, aws, cidr):
    refused(gpubox, aws, f"ssh_cidr '{cidr}' is not an IP range", "-e ssh_cidr=203.0.113.7/32", ssh_cidr=cidr)


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_world_open_ssh_is_refused_unless_allowed(gpubox, aws, cidr):
    refused(gpubox, aws, f"ssh_cidr '{cidr}' opens SSH to the whole internet", "allow_world_ssh=true", ssh_cidr=cidr)


def test_world_open_ssh_when_explicitly_allowed(gpubox, aws):
    result = gpubox.launch(ssh_cidr="0.0.0.0/0", allow_world_ssh=True)
    assert result.rc == 0, result.text
    [group] = aws.groups()
    assert [r["CidrIp"] for r in group["IpPermissions"][0]["IpRanges"]] == ["0.0.0.0/0"]


def test_missing_aws_credentials(gpubox, aws):
    refused(gpubox, aws, "No usable AWS credentials", "aws configure", "AWS_ACCESS_KEY_ID",
            env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})


def test_missing_credentials_for_status(gpubox, aws):
    refused(gpubox, aws, "No usable AWS credentials", playbook="status.yml",
            env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})


def test_deep_learning_ami_parameter_missing_in_the_region(gpubox, aws):
    # The emulator has no /aws/service/deeplearning parameters: the message must say what to pass instead.
    refused(gpubox, aws, "Deep Learning Base OSS Nvidia Driver GPU AMI",
            "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id",
            "-e ami=ami-", ami="dlami")


def test_malformed_ami(gpubox, aws):
    refused(gpubox, aws, "ami 'ubuntu' is not dlami, plain or an AMI id", ami="ubuntu")


def test_ami_for_another_processor(gpubox, aws):
    refused(gpubox, aws, f"AMI {ARM_AMI} is built for arm64", "x86_64", ami=ARM_AMI)


def test_unknown_ami(gpubox, aws):
    refused(gpubox, aws, "AMI ami-0123456789abcdef0 cannot be used in us-east-1", ami="ami-0123456789abcdef0")


def test_root_volume_too_small(gpubox, aws):
    refused(gpubox, aws, "volume_size 8 GiB is too small", volume_size=8)


def test_unreachable_ip_lookup(gpubox, aws):
    refused(gpubox, aws, "Could not detect your public IP address", "-e ssh_cidr=",
            ssh_cidr="", ssh_ip_lookup_url="http://127.0.0.1:9/")


def test_world_open_ssh_with_allow_given_as_the_string_false(gpubox, aws):
    # -e allow_world_ssh=false arrives as the string "false"
    refused(gpubox, aws, "opens SSH to the whole internet", ssh_cidr="0.0.0.0/0", allow_world_ssh="false")


def test_a_key_pair_of_the_box_name_that_gpubox_did_not_create_is_left_alone(gpubox, aws):
    aws.ec2.create_key_pair(KeyName="gpubox-gpubox")
    fingerprint = aws.keys()[0]["KeyFingerprint"]
    refused(gpubox, aws, "A key pair named gpubox-gpubox already exists", "gpubox did not create it", "-e name=OTHER")
    assert aws.keys()[0]["KeyFingerprint"] == fingerprint and not aws.keys()[0].get("Tags")


def test_a_security_group_of_the_box_name_that_gpubox_did_not_create_is_left_alone(gpubox, aws):
    vpc = aws.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    aws.ec2.create_security_group(GroupName="gpubox-gpubox", Description="the user's own", VpcId=vpc)
    refused(gpubox, aws, "A security group named gpubox-gpubox already exists", "gpubox did not create it")
    [group] = aws.groups()
    assert group["Description"] == "the user's own" and not group.get("Tags")


def test_resize_to_a_type_the_box_zone_does_not_offer_changes_nothing(gpubox, aws):
    assert gpubox.launch().rc == 0  # lands in us-east-1a; moto offers p3dn.24xlarge in 1c and 1d only
    assert aws.instance()["Placement"]["AvailabilityZone"] == "us-east-1a"
    refused(gpubox, aws, "p3dn.24xlarge is not offered in us-east-1a, where box 'gpubox' lives", "Nothing was changed",
            type="p3dn.24xlarge", resize=True)
    inst = aws.instance()
    assert (inst["InstanceType"], inst["State"]["Name"]) == ("g5.xlarge", "running")
