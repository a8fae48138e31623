"""Capacity failover, spot boxes and moving a data volume, against the emulator through the recording proxy.

EC2's "no capacity here" answers are the proxy's (support/aws_proxy.py refuse()): moto always has capacity. moto
marks an instance launched with spot market options as spot, but makes no spot request for it, so what gpubox
asks for is read from the recorded requests; a spot request of moto's own (RequestSpotInstances) stands in for
the one AWS would make, to prove teardown's order.
"""

import boto3

from support.gpubox import REGION, UBUNTU_AMI

NO_CAPACITY = ("InsufficientInstanceCapacity",
               "We currently do not have sufficient g5.xlarge capacity in the Availability Zone you requested.")


def _launches(proxy, aws):
    """(zone, type, market) of each RunInstances request, in order."""
    zone_of = {s["SubnetId"]: s["AvailabilityZone"] for s in aws.ec2.describe_subnets()["Subnets"]}
    return [(zone_of.get(f.get("SubnetId")), f.get("InstanceType"), f.get("InstanceMarketOptions.MarketType", "on-demand"))
            for service, action, f in proxy.requests if action == "RunInstances"]


def test_no_capacity_moves_on_zone_by_zone_then_type_by_type(gpubox, aws, proxy):
    # No g6e.xlarge anywhere, no g5.xlarge in us-east-1a: the box lands as a g5.xlarge in us-east-1b.
    first = _subnet(aws, "us-east-1a")
    proxy.refuse("RunInstances", *NO_CAPACITY, when=lambda f: f["InstanceType"] == "g6e.xlarge" or f["SubnetId"] == first)
    result = gpubox.launch(type="g6e.xlarge,g5.xlarge")
    assert result.rc == 0, result.text

    tried = _launches(proxy, aws)
    assert tried == [(z, "g6e.xlarge", "on-demand") for z in ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d")] + [
        ("us-east-1a", "g5.xlarge", "on-demand"), ("us-east-1b", "g5.xlarge", "on-demand")]
    inst = aws.instance()
    assert (inst["InstanceType"], inst["Placement"]["AvailabilityZone"]) == ("g5.xlarge", "us-east-1b")
    # A refused launch leaves nothing: one instance, and the data volume beside it.
    assert len(aws.instances()) == 1
    [data] = aws.data_volumes()
    assert data["AvailabilityZone"] == "us-east-1b" and data["Attachments"][0]["InstanceId"] == inst["InstanceId"]
    # One line per launch tried, with AWS's answer.
    attempts = [a for t in result.output["plays"][0]["tasks"] for h in t["hosts"].values() for a in h.get("attempts", [])]
    assert attempts[0].startswith("us-east-1a g6e.xlarge on-demand: InsufficientInstanceCapacity")
    assert attempts[-1] == f"us-east-1b g5.xlarge on-demand: launched {inst['InstanceId']}"
    assert len(attempts) == 6

    # A re-run finds the box: nothing is tried again.
    proxy.requests.clear()
    again = gpubox.launch(type="g6e.xlarge,g5.xlarge")
    assert again.rc == 0 and again.changed == 0, again.text
    assert _launches(proxy, aws) == []


def test_no_capacity_anywhere_says_what_to_do_and_retry_until_up_sweeps_again(gpubox, aws, proxy):
    proxy.refuse("RunInstances", *NO_CAPACITY)
    refused = gpubox.launch(data_volume_size=0)
    assert refused.rc != 0
    assert refused.said("AWS refused every launch gpubox tried (5 launches)", "retry_until_up=true",
                        "-e type=g6e.xlarge,g6.xlarge,g5.xlarge", "market=auto")
    assert aws.instances() == []

    # Capacity comes back after one more sweep: retry_until_up waits for it.
    proxy.clear()
    proxy.refuse("RunInstances", *NO_CAPACITY, times=5)
    result = gpubox.launch(data_volume_size=0, retry_until_up=True, retry_interval=1, retry_timeout=60)
    assert result.rc == 0, result.text
    assert len(_launches(proxy, aws)) == 6
    assert aws.instance()["Placement"]["AvailabilityZone"] == "us-east-1a"


def test_a_spot_box_is_a_persistent_request_that_stops_and_says_its_price(gpubox, aws, proxy):
    result = gpubox.launch(market="spot", max_price="0.75", data_volume_size=0)
    assert result.rc == 0, result.text
    [run] = [f for _, action, f in proxy.requests if action == "RunInstances"]
    assert run["InstanceMarketOptions.MarketType"] == "spot"
    assert run["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == "persistent"
    assert run["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == "stop"
    assert run["InstanceMarketOptions.SpotOptions.MaxPrice"] == "0.75"
    assert run["InstanceMarketOptions.SpotOptions.ValidUntil"].endswith("T00:00:00Z")
    # The spot request carries the box's tags: the IAM policy lets only its owner cancel it.
    [spec] = [k.rsplit(".", 1)[0] for k in run if k.endswith(".ResourceType") and run[k] == "spot-instances-request"]
    request_tags = {v: run[k[:-len("Key")] + "Value"] for k, v in run.items() if k.startswith(f"{spec}.Tag.") and k.endswith(".Key")}
    assert request_tags["gpubox:managed-by"] == "gpubox" and request_tags["gpubox:name"] == "gpubox"
    assert aws.instance()["InstanceLifecycle"] == "spot"
    # moto's spot price for every type and zone is 0.00001.
    assert result.said("spot at $0.00001/h now", "about $1.006/h on demand")

    status = gpubox.run("status.yml")
    assert status.rc == 0, status.text
    [row] = [line for line in status.messages if line.startswith("gpubox ")]
    assert " spot " in row and "0.00001" in row and "1.01" in row


def test_market_auto_tries_spot_first_then_on_demand(gpubox, aws, proxy):
    proxy.refuse("RunInstances", "InsufficientInstanceCapacity", "There is no Spot capacity available.",
                 when=lambda f: f.get("InstanceMarketOptions.MarketType") == "spot")
    result = gpubox.launch(market="auto", data_volume_size=0, type="g6e.xlarge")
    assert result.rc == 0, result.text
    zones = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
    assert _launches(proxy, aws) == [(z, "g6e.xlarge", "spot") for z in zones] + [("us-east-1a", "g6e.xlarge", "on-demand")]
    assert "InstanceLifecycle" not in aws.instance()


def test_teardown_cancels_the_spot_request_before_it_terminates(gpubox, aws, proxy):
    me = boto3.client("sts", endpoint_url=aws.url, region_name=REGION, aws_access_key_id="testing",
                      aws_secret_access_key="testing").get_caller_identity()["UserId"]
    tags = [{"Key": "gpubox:managed-by", "Value": "gpubox"}, {"Key": "gpubox:name", "Value": "gpubox"},
            {"Key": "gpubox:owner", "Value": me}]
    # A spot box as AWS would have it: an instance of a persistent request (moto makes both).
    [request] = aws.ec2.request_spot_instances(
        Type="persistent", InstanceInterruptionBehavior="stop", LaunchSpecification={
            "ImageId": UBUNTU_AMI, "InstanceType": "g5.xlarge"},
        TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": tags},
                           {"ResourceType": "instance", "Tags": tags}])["SpotInstanceRequests"]
    instance_id = aws.instance()["InstanceId"]
    proxy.clear()

    result = gpubox.run("teardown.yml", confirm=True)
    assert result.rc == 0, result.text
    calls = [action for _, action in proxy.calls]
    assert calls.index("CancelSpotInstanceRequests") < calls.index("TerminateInstances")
    [cancel] = [f for _, action, f in proxy.requests if action == "CancelSpotInstanceRequests"]
    assert cancel["SpotInstanceRequestId.1"] == request["SpotInstanceRequestId"]
    assert aws.ec2.describe_spot_instance_requests()["SpotInstanceRequests"] == []
    assert aws.instances() == []
    assert result.said(f"instance {instance_id} (g5.xlarge, spot request {request['SpotInstanceRequestId']})")


def test_a_data_volume_moves_to_a_zone_with_capacity_only_when_asked(gpubox, aws, proxy):
    assert gpubox.launch().rc == 0
    [old] = aws.data_volumes()
    assert old["AvailabilityZone"] == "us-east-1a"
    assert gpubox.run("teardown.yml", confirm=True).rc == 0

    home = _subnet(aws, "us-east-1a")
    proxy.refuse("RunInstances", *NO_CAPACITY, when=lambda f: f["SubnetId"] == home)
    tied = gpubox.launch()
    assert tied.rc != 0
    assert tied.said(f"data volume {old['VolumeId']} ties it to us-east-1a", "-e move_data=true")
    assert aws.instances() == [] and [v["VolumeId"] for v in aws.data_volumes()] == [old["VolumeId"]]

    # Interrupted after the copy was made (its attach refused): both volumes are kept, and said so.
    proxy.refuse("AttachVolume", "IncorrectState", "The instance is not ready (a stand-in interruption).", times=1)
    interrupted = gpubox.launch(move_data=True)
    assert interrupted.rc != 0
    assert interrupted.said(f"The data volume {old['VolumeId']} is kept as it was, and its copy vol-",
                            "run launch again to finish the move")
    assert len(aws.data_volumes()) == 2

    # The next launch (move_data or not) finishes the move: the copy attached, then the original deleted.
    proxy.requests.clear()
    proxy.calls.clear()
    moved = gpubox.launch()
    assert moved.rc == 0, moved.text
    inst = aws.instance()
    assert inst["Placement"]["AvailabilityZone"] == "us-east-1b"
    [copy] = aws.data_volumes()
    assert copy["VolumeId"] != old["VolumeId"] and copy["AvailabilityZone"] == "us-east-1b"
    assert aws.tags(copy)["gpubox:moved-from"] == old["VolumeId"]
    assert copy["Attachments"][0]["InstanceId"] == inst["InstanceId"]
    # The snapshot it was made from is gone, and so is the original, once the copy was attached.
    snapshots = aws.ec2.describe_snapshots(Filters=[{"Name": "tag:gpubox:name", "Values": ["gpubox"]}])["Snapshots"]
    assert snapshots == []
    calls = [action for _, action in proxy.calls]
    assert "CreateSnapshot" not in calls and calls.index("AttachVolume") < calls.index("DeleteVolume")
    again = gpubox.launch()
    assert again.rc == 0 and again.changed == 0, again.text


def _subnet(aws, zone):
    return [s["SubnetId"] for s in aws.ec2.describe_subnets()["Subnets"] if s["AvailabilityZone"] == zone
            and s["DefaultForAz"]][0]
