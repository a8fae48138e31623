"""Capacity failover and spot: the planner's launch order and choices, and the sweep that tries them.

The planner (module_utils/box_plan.py) decides where and how a new box may launch, in order; the action plugin
(plugins/action/ec2_box_create.py) tries each in turn. The sweep's launches here run the create module's own code
against EC2 answers stubbed with botocore's Stubber: zone 1 has no capacity, zone 2 launches.
"""

import boto3
import pytest
from botocore.stub import ANY, Stubber

from ansible_collections.gpubox.box.plugins.action import ec2_box_create as action
from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity
from ansible_collections.gpubox.box.plugins.module_utils import box_plan as planner
from ansible_collections.gpubox.box.plugins.modules import ec2_box_create as create
from test_box_gather import retrying
from test_box_plan import ALICE, ME, found, group, instance, key, plan, refused, tags, volume

ZONES = {"g5.xlarge": ["us-east-1a", "us-east-1b"], "g6.xlarge": ["us-east-1b"], "g4dn.xlarge": ["us-east-1a", "us-east-1c"],
         "g6e.xlarge": ["us-east-1a", "us-east-1c", "us-east-1d"]}


def launches(result):
    return [(a["zone"], a["type"], a["market"]) for a in result["create"]["instance"]["attempts"]]


# --- The order of launches

@pytest.mark.parametrize("types, market, expected", [
    ("g5.xlarge", "", [("us-east-1a", "g5.xlarge", "on-demand"), ("us-east-1b", "g5.xlarge", "on-demand")]),
    # The user's order of types, each type's zones in turn.
    ("g6e.xlarge,g5.xlarge", "on-demand", [("us-east-1a", "g6e.xlarge", "on-demand"), ("us-east-1c", "g6e.xlarge", "on-demand"),
                                           ("us-east-1d", "g6e.xlarge", "on-demand"), ("us-east-1a", "g5.xlarge", "on-demand"),
                                           ("us-east-1b", "g5.xlarge", "on-demand")]),
    (" g6.xlarge , g6.xlarge,g4dn.xlarge ", "spot", [("us-east-1b", "g6.xlarge", "spot"), ("us-east-1a", "g4dn.xlarge", "spot"),
                                                    ("us-east-1c", "g4dn.xlarge", "spot")]),
    # auto: every spot launch first, then on demand.
    ("g6.xlarge,g5.xlarge", "auto", [("us-east-1b", "g6.xlarge", "spot"), ("us-east-1a", "g5.xlarge", "spot"),
                                     ("us-east-1b", "g5.xlarge", "spot"), ("us-east-1b", "g6.xlarge", "on-demand"),
                                     ("us-east-1a", "g5.xlarge", "on-demand"), ("us-east-1b", "g5.xlarge", "on-demand")]),
])
def test_a_new_box_tries_each_type_in_order_and_each_of_its_zones(types, market, expected):
    result = plan(what=found(offerings=ZONES), type=types, market=market)
    assert not result["problems"], result["problems"]
    assert launches(result) == expected
    first = result["create"]["instance"]["attempts"][0]["params"]
    assert (first["InstanceType"], first["SubnetId"]) == (expected[0][1], f"subnet-{expected[0][0][-1]}")
    assert result["record"]["market"] == expected[0][2]


def test_spot_launches_ask_for_a_persistent_request_that_stops_and_tag_it():
    result = plan(what=found(offerings=ZONES), type="g6.xlarge", market="auto", max_price="0.60")
    spot, on_demand = [a["params"] for a in result["create"]["instance"]["attempts"]]
    # ValidUntil: a persistent request otherwise ends after 7 days, and the box could no longer be stopped.
    assert spot["InstanceMarketOptions"] == {"MarketType": "spot", "SpotOptions": {
        "SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop", "MaxPrice": "0.60",
        "ValidUntil": "2027-12-01T00:00:00Z"}}
    [request] = [s for s in spot["TagSpecifications"] if s["ResourceType"] == "spot-instances-request"]
    assert {t["Key"]: t["Value"] for t in request["Tags"]}[identity.OWNER] == "AIDAME"
    assert "InstanceMarketOptions" not in on_demand
    assert spot["InstanceInitiatedShutdownBehavior"] == on_demand["InstanceInitiatedShutdownBehavior"] == "stop"
    assert plan(what=found(offerings=ZONES))["create"]["instance"]["attempts"][0]["params"].get("InstanceMarketOptions") is None


def test_a_type_that_cannot_launch_is_left_out_with_its_reason_and_all_of_them_refused():
    offered = found(offerings={**ZONES, "g4dn.2xlarge": []})
    result = plan(what=offered, type="g4dn.2xlarge,p3dn.24xlarge,g6.xlarge")
    assert [t for _, t, _ in launches(result)] == ["g6.xlarge"]
    notes = " ".join(result["notes"])
    assert "Left out: g4dn.2xlarge is not offered in us-east-1" in notes
    assert "Left out: p3dn.24xlarge is retired" in notes

    text = refused(plan(what=offered, type="g4dn.2xlarge,p3dn.24xlarge"), "g4dn.2xlarge is not offered",
                   "p3dn.24xlarge is retired")
    assert text.count("Nothing was created.") == 1


@pytest.mark.parametrize("types, problem", [("g6e.xlarg,g5.xlarge", "'g6e.xlarg' is not a GPU instance type gpubox knows"),
                                            ("g5.xlarge,g4ad.xlarge", "g4ad.xlarge has AMD Radeon Pro V520 GPUs")])
def test_a_typo_or_an_unusable_gpu_in_the_list_is_refused_not_skipped(types, problem):
    refused(plan(what=found(offerings=ZONES), type=types), problem)


def test_the_quota_is_checked_for_each_type_and_market_before_any_launch():
    # G spot quota 0, on demand 8: auto launches on demand only; spot alone is refused with the spot quota's code.
    quotas = {"L-DB2E81BA": {"value": 8.0, "error": ""}, "L-3819A6DF": {"value": 0.0, "error": ""},
              "L-417A185B": {"value": 192.0, "error": ""}, "L-7212CCBC": {"value": 0.0, "error": ""}}
    what = found(offerings=ZONES, quotas=quotas, running_vcpus={"L-DB2E81BA": 0, "L-3819A6DF": 0})
    result = plan(what=what, type="g5.xlarge", market="auto")
    assert {m for _, _, m in launches(result)} == {"on-demand"}
    assert "All G and VT Spot Instance Requests" in " ".join(result["notes"])
    refused(plan(what=what, type="g5.xlarge", market="spot"), "quota 'All G and VT Spot Instance Requests' (L-3819A6DF)",
            "--quota-code L-3819A6DF")
    # A big type over the on-demand quota is left out; the small one still goes.
    result = plan(what=what, type="g5.4xlarge,g5.xlarge")
    assert [t for _, t, _ in launches(result)] == ["g5.xlarge", "g5.xlarge"]


def test_a_data_volume_keeps_the_box_in_its_zone_unless_move_data():
    data = found(offerings=ZONES, volumes=[volume(zone="us-east-1b")])
    assert launches(plan(what=data, type="g5.xlarge,g4dn.xlarge")) == [("us-east-1b", "g5.xlarge", "on-demand")]
    assert "ties it to us-east-1b" in plan(what=data)["create"]["instance"]["advice"]
    refused(plan(what=data, type="g4dn.xlarge"), "in us-east-1b, where g4dn.xlarge is not offered", "-e move_data=true")

    moving = plan(what=data, type="g5.xlarge,g4dn.xlarge", move_data=True)
    assert launches(moving) == [("us-east-1b", "g5.xlarge", "on-demand"), ("us-east-1a", "g5.xlarge", "on-demand"),
                                ("us-east-1a", "g4dn.xlarge", "on-demand"), ("us-east-1c", "g4dn.xlarge", "on-demand")]
    assert "move_volume" in moving["changes"] and moving["create"]["move"]["volume_id"] == "vol-data"
    copy = moving["create"]["move"]["params"]["TagSpecifications"][0]["Tags"]
    assert {t["Key"]: t["Value"] for t in copy}[identity.MOVED_FROM] == "vol-data"
    assert moving["attach"]["volume_id"] == "vol-data"  # the copy replaces it only when the instance lands elsewhere


def test_a_move_that_an_earlier_run_left_unfinished_is_finished():
    result = plan(what=_moved(), type="g5.xlarge")
    assert result["changes"] == ["finish_move"] and result["delete_volume_ids"] == ["vol-data"]
    # Two data volumes that are not a move stay a refusal.
    refused(plan(what=found(volumes=[volume(), volume(vid="vol-2")])), "has 2 data volumes")


def _moved(copy_owner=ME, copy_time="2026-12-01T11:00:00+00:00", original_attached_to=None):
    original = volume(zone="us-east-1a", attached_to=original_attached_to)
    original["create_time"] = "2026-11-01T10:00:00+00:00"
    copy = volume(vid="vol-copy", zone="us-east-1b", attached_to="i-0001")
    copy["create_time"] = copy_time
    copy["tags"][identity.MOVED_FROM] = "vol-data"
    if copy_owner is None:
        del copy["tags"][identity.OWNER]
    return found(offerings=ZONES, instances=[instance(zone="us-east-1b", volume="vol-copy")], volumes=[original, copy],
                 key_pairs=[key()], security_groups=[group()])


@pytest.mark.parametrize("forged", [{"copy_owner": None}, {"copy_time": "2026-10-01T00:00:00+00:00"}])
def test_a_volume_that_only_claims_to_be_a_copy_never_gets_the_original_deleted(forged):
    # An ownerless volume (adopt would take it) or one older than the original: not a copy gpubox made.
    result = plan(what=_moved(**forged), type="g5.xlarge", adopt=True)
    assert "finish_move" not in result["changes"] and result["delete_volume_ids"] == []
    assert result["problems"]


def test_an_original_still_attached_somewhere_is_kept():
    result = plan(what=_moved(original_attached_to="i-old"), type="g5.xlarge")
    assert "finish_move" not in result["changes"] and result["delete_volume_ids"] == []
    assert "Kept data volume vol-data" in " ".join(result["notes"])


def test_an_interrupted_spot_box_is_started_by_aws_only():
    stopped = instance(state="stopped", itype="g6.xlarge", zone="us-east-1b")
    stopped.update(instance_lifecycle="spot", state_reason={
        "code": "Server.SpotInstanceShutdown", "message": "Server.SpotInstanceShutdown: Spot Instance shutdown"})
    for action in ("start", "launch"):
        refused(plan(action, found(offerings=ZONES, instances=[stopped])), "a spot box that AWS stopped",
                "only AWS starts an interrupted spot box again", "-e market=on-demand")
    # One you stopped yourself starts as usual; its type cannot change.
    stopped["state_reason"] = {"code": "Client.UserInitiatedShutdown", "message": "User initiated shutdown"}
    assert plan("start", found(instances=[stopped]))["changes"] == ["start"]
    refused(plan(what=found(offerings=ZONES, instances=[stopped]), type="g5.xlarge", resize=True),
            "A spot box's type cannot change")


def test_teardown_cancels_a_spot_request_first():
    spot = instance()
    spot["instance_lifecycle"] = "spot"
    requests = [{"id": "sir-1", "instance_id": "i-0001", "state": "active", "tags": {}},
                # The box's own request whose instance is gone (it would launch another), and another owner's.
                {"id": "sir-2", "instance_id": "", "state": "open", "tags": tags()},
                {"id": "sir-3", "instance_id": "", "state": "open", "tags": tags(owner=ALICE)},
                {"id": "sir-4", "instance_id": "i-other", "state": "active", "tags": tags("lab-data")}]
    result = plan("teardown", found(instances=[spot], spot_requests=requests))
    assert result["changes"][:2] == ["cancel_spot_requests", "terminate"]
    assert result["cancel_spot_ids"] == ["sir-1", "sir-2"]
    assert result["doomed"][0].startswith("instance i-0001 (g5.xlarge, spot request sir-1)")
    assert "spot request sir-2 (its instance is gone; it would launch another)" in result["doomed"]
    assert "cancel_spot_requests" not in plan("teardown", found(instances=[instance()]))["changes"]


@pytest.mark.parametrize("market, max_price, problem", [
    ("cheap", "", "market 'cheap' is not one of on-demand, spot, auto"),
    ("spot", "free", "max_price 'free' is not a price"),
    ("spot", "0.0001", "above 0.001"),
    ("", "0.5", "max_price applies to spot boxes"),
])
def test_market_settings_are_checked_before_anything(market, max_price, problem):
    refused(plan(what=found(), market=market, max_price=max_price), problem, "Nothing was created.")


def test_status_and_the_closing_message_show_the_market_and_the_spot_price():
    spot = instance()
    spot["instance_lifecycle"] = "spot"
    lines = planner.status_lines([spot, instance("other", iid="i-2")], *_catalog(), "2026-12-01T12:00:00+00:00",
                                 {"user_id": "AIDAME"}, {"g5.xlarge": {"us-east-1a": "0.452100"}})
    header, lab, other = lines
    assert "MARKET" in header and "SPOT $/H" in header
    assert " spot " in lab and "0.4521" in lab and "1.01" in lab
    assert " on-demand " in other
    record = planner.box_record(spot)
    planner._add_spot_price(record, {"spot_prices": {"g5.xlarge": {"us-east-1a": "0.452100"}}})
    record["usd_per_hour"] = 1.006
    assert planner.price_label(record) == "spot at $0.4521/h now (about $1.006/h on demand)"
    assert planner.price_label({"usd_per_hour": 1.006, "market": "on-demand"}) == "about $1.006/h on demand"


def _catalog():
    from test_box_plan import FAMILIES, QUOTAS
    return FAMILIES, QUOTAS


# --- The sweep: each launch in turn, with the create module's own code against stubbed EC2 answers

TOKEN = {"owner": "AIDAME", "name": "lab", "resource": "instance", "generation": 1, "salt": "sg-1"}


def _attempt(zone):
    return {"label": f"{zone} g5.xlarge on-demand", "params": {"InstanceType": "g5.xlarge", "SubnetId": f"subnet-{zone[-1]}",
                                                               "ImageId": "ami-0123456789abcdef0"}}


def _launcher(ec2):
    """What the module does for one launch (main() without Ansible), on a stubbed client with the module's retries."""
    client = retrying(ec2)

    def launch(attempt, look_first):
        try:
            iid, generation = create.create_once(client, "instance", TOKEN, attempt["params"], sleep=lambda s: None)
        except create.botocore.exceptions.ClientError as e:
            return {"failed": True, **(create.capacity_failure(e) or {"msg": str(e)})}
        return {"changed": True, "id": iid, "generation": generation}
    return launch


def test_zone_one_has_no_capacity_zone_two_launches():
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    said = []
    with Stubber(ec2) as stub:
        stub.add_client_error("run_instances", "InsufficientInstanceCapacity",
                              "We currently do not have sufficient g5.xlarge capacity in the Availability Zone you requested",
                              expected_params={"ClientToken": ANY, "MinCount": 1, "MaxCount": 1, "InstanceType": "g5.xlarge",
                                               "SubnetId": "subnet-a", "ImageId": "ami-0123456789abcdef0"})
        stub.add_response("run_instances", {"Instances": [{"InstanceId": "i-b"}]},
                          {"ClientToken": ANY, "MinCount": 1, "MaxCount": 1, "InstanceType": "g5.xlarge",
                           "SubnetId": "subnet-b", "ImageId": "ami-0123456789abcdef0"})
        stub.add_response("describe_instances", {"Reservations": [{"Instances": [{
            "InstanceId": "i-b", "State": {"Name": "pending"}, "Tags": [
                {"Key": "gpubox:managed-by", "Value": "gpubox"}, {"Key": "gpubox:name", "Value": "lab"},
                {"Key": "gpubox:owner", "Value": "AIDAME"}]}]}]}, {"InstanceIds": ["i-b"]})
        answer = action.sweep([_attempt("us-east-1a"), _attempt("us-east-1b")], {}, _launcher(ec2), said.append)
    assert answer["id"] == "i-b" and not answer.get("failed")
    assert answer["attempts"][0].startswith("us-east-1a g5.xlarge on-demand: InsufficientInstanceCapacity: We currently")
    assert answer["attempts"][1] == "us-east-1b g5.xlarge on-demand: launched i-b"
    assert said == [f"  launch {line}" for line in answer["attempts"]]


def test_another_failure_ends_the_sweep_at_once():
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    with Stubber(ec2) as stub:
        stub.add_client_error("run_instances", "InvalidAMIID.NotFound", "The image id does not exist")
        answer = action.sweep([_attempt("us-east-1a"), _attempt("us-east-1b")], {}, _launcher(ec2), lambda line: None)
    assert answer["failed"] and not answer.get("capacity") and "InvalidAMIID.NotFound" in answer["msg"]
    assert answer["attempts"][0].startswith("us-east-1a g5.xlarge on-demand: An error occurred (InvalidAMIID.NotFound)")


def test_a_quota_stops_its_type_and_market_being_tried_again():
    tries = []

    def launch(attempt, look_first):
        tries.append(attempt["label"])
        return {"failed": True, "capacity": True, "code": "VcpuLimitExceeded", "msg": "VcpuLimitExceeded: over"}

    attempts = [_attempt("us-east-1a"), _attempt("us-east-1b")]
    for a in attempts:
        a.update(type="g5.xlarge", market="on-demand")
    answer = action.sweep(attempts, {"until_up": True, "interval": 1, "timeout": 100}, launch, lambda line: None,
                          lambda s: None)
    # One try: the quota is the account's, not the zone's; its own message (not capacity advice) is kept.
    assert tries == ["us-east-1a g5.xlarge on-demand"]
    assert answer["failed"] and not answer["capacity"] and answer["code"] == "VcpuLimitExceeded"


def test_retry_until_up_sweeps_again_until_its_timeout():
    clock, slept, tries = [0.0], [], []

    def launch(attempt, look_first):
        tries.append((attempt["label"], look_first))
        return {"failed": True, "capacity": True, "msg": "InsufficientInstanceCapacity: none"}

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    attempts = [_attempt("us-east-1a"), _attempt("us-east-1b")]
    answer = action.sweep(attempts, {"until_up": True, "interval": 30, "timeout": 100}, launch, lambda line: None,
                          sleep, lambda: clock[0])
    assert answer["failed"] and answer["capacity"]
    assert slept == [30, 30, 30] and len(tries) == 8
    assert tries[0] == ("us-east-1a g5.xlarge on-demand", False) and all(look for _, look in tries[1:])
    assert answer["msg"].startswith("AWS refused every launch gpubox tried (2 launches, 4 times)")
    # Without until_up: one sweep.
    tries.clear()
    assert action.sweep(attempts, {}, launch, lambda line: None, sleep, lambda: clock[0])["failed"]
    assert len(tries) == 2


def test_another_owners_baked_image_is_refused_by_id():
    image = {"architecture": "x86_64", "root_device_name": "/dev/sda1",
             "tags": {**tags(owner=ALICE), identity.ROLE: "image"}}
    what = found(images={**found()["images"], "ami-0ccccccccccccccc0": image})
    refused(plan(what=what, ami="ami-0ccccccccccccccc0"), "a gpubox image baked by another owner (AIDAALICE",
            "would let them into yours")
    image["tags"] = {**tags(), identity.ROLE: "image"}
    assert not plan(what=what, ami="ami-0ccccccccccccccc0")["problems"]


def test_a_box_launched_from_a_bigger_baked_image_gets_a_root_disk_as_big():
    big = {"id": "ami-0bbbbbbbbbbbbbbb1", "name": "gpubox-lab-20261201-1000", "state": "available", "root_size": 150,
           "root_device_name": "/dev/sda1", "created": "2026-12-01T10:00:00Z", "snapshots": [],
           "tags": {**tags(), identity.ROLE: "image", "gpubox:os": "ubuntu24.04", "gpubox:arch": "x86_64"}}
    result = plan(what=found(baked_images=[big]), ami="baked", volume_size=100)
    assert not result["problems"], result["problems"]
    params = result["create"]["instance"]["attempts"][0]["params"]
    assert params["ImageId"] == big["id"] and params["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 150
    assert "The root disk is made 150 GiB" in " ".join(result["notes"])
    assert plan(what=found(baked_images=[big]), ami="baked", volume_size=200)["create"]["instance"]["attempts"][0][
        "params"]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 200
