"""The instance catalog and the functions that read it, and the planner's small input checks."""

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.gpubox.box.plugins.module_utils import box_catalog as catalog
from ansible_collections.gpubox.box.plugins.module_utils import box_identity as identity
from ansible_collections.gpubox.box.plugins.module_utils import box_plan as planner

REPO = Path(__file__).resolve().parents[2]
CATALOG = yaml.safe_load((REPO / "catalog/instance_types.yml").read_text())
FAMILIES = CATALOG["gpubox_instance_families"]
QUOTAS = CATALOG["gpubox_quota_groups"]

OLD_ARCHITECTURES = {"kepler", "maxwell", "pascal", "volta"}


def test_catalog_covers_current_and_legacy_families():
    current = {"g4dn", "g5", "g6", "g6e", "gr6", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200"}
    legacy = {"p2", "p3", "p3dn", "g3", "g4ad"}
    assert current <= {f for f, d in FAMILIES.items() if d["status"] == "current"}
    assert legacy <= {f for f, d in FAMILIES.items() if d["status"] == "legacy"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_is_complete_and_consistent(family):
    data = FAMILIES[family]
    for key in ("gpu_model", "gpu_memory_gib", "gpu_fp32_tflops", "architecture", "module_flavor", "quota_group", "sizes"):
        assert key in data, key
    expected_flavor = "none" if data["gpu_vendor"] != "nvidia" else (
        "proprietary" if data["architecture"] in OLD_ARCHITECTURES else "open")
    assert data["module_flavor"] == expected_flavor
    assert data["quota_group"] == ("P" if family.startswith("p") else "G")
    for size, per_size in data["sizes"].items():
        assert per_size["vcpus"] > 0 and per_size["gpus"] > 0 and per_size["usd_per_hour"] > 0, size
    # The compute capability picks framework builds (python_envs): every NVIDIA family has one, as "MAJOR.MINOR".
    if data["gpu_vendor"] == "nvidia":
        assert re.fullmatch(r"\d+\.\d", data["compute_capability"]), data.get("compute_capability")


def test_quota_codes():
    assert (QUOTAS["G"]["on_demand_code"], QUOTAS["G"]["spot_code"]) == ("L-DB2E81BA", "L-3819A6DF")
    assert (QUOTAS["P"]["on_demand_code"], QUOTAS["P"]["spot_code"]) == ("L-417A185B", "L-7212CCBC")


def test_instance_type_flattens_family_and_size():
    entry = catalog.instance_type("p4d.24xlarge", FAMILIES, QUOTAS)
    assert entry["gpus"] == 8 and entry["vcpus"] == 96
    assert entry["gpu_memory_gib_total"] == 320
    assert entry["fp32_tflops"] == 156.0
    assert entry["nvswitch"] is True
    assert entry["on_demand_code"] == "L-417A185B"
    assert catalog.instance_type("g5.huge", FAMILIES, QUOTAS) == {}
    assert catalog.instance_type("t3.micro", FAMILIES, QUOTAS) == {}


@pytest.mark.parametrize("typed, expected", [
    ("g5.xlarg", "g5.xlarge"), ("g5xlarge", "g5.xlarge"), ("p3.2xl", "p3.2xlarge"), ("g6e.2xlarge ", "g6e.2xlarge")])
def test_nearest_instance_types(typed, expected):
    assert expected in catalog.nearest_instance_types(typed, FAMILIES)


def test_alternatives_to_p3_are_current_single_gpu_nvidia_types():
    alternatives = catalog.current_alternatives("p3.2xlarge", FAMILIES, QUOTAS)
    assert [a["type"] for a in alternatives][0] == "g4dn.xlarge"
    for alt in alternatives:
        assert alt["status"] == "current" and alt["gpu_vendor"] == "nvidia" and alt["gpus"] == 1


def test_alternatives_to_an_eight_gpu_type_have_eight_gpus():
    alternatives = catalog.current_alternatives("p3dn.24xlarge", FAMILIES, QUOTAS)
    assert all(a["gpus"] == 8 for a in alternatives)


@pytest.mark.parametrize("cidr, problem", [
    ("203.0.113.7/32", ""), ("2001:db8::1/128", ""), ("198.51.100.0/24", ""),
    ("0.0.0.0/0", "whole internet"), ("::/0", "whole internet"), ("0.0.0.0/1", "internet addresses"),
    ("nonsense", "not an IP range"), ("1.2.3.4/33", "not an IP range")])
def test_ssh_cidr_problem(cidr, problem):
    found = planner.ssh_cidr_problem(cidr)
    assert (problem in found) if problem else found == ""


def test_world_cidr_allowed_on_request():
    assert planner.ssh_cidr_problem("0.0.0.0/0", True) == ""


def test_host_cidr():
    assert planner.host_cidr(" 198.51.100.23\n") == "198.51.100.23/32"
    assert planner.host_cidr("2001:db8::5") == "2001:db8::5/128"
    with pytest.raises(ValueError):
        planner.host_cidr("<html>captive portal</html>")


@pytest.mark.parametrize("name, ok", [
    ("gpubox", True), ("a", True), ("thesis-gpu-2", True), ("x" * 32, True),
    ("x" * 33, False), ("-a", False), ("a-", False), ("A", False), ("a_b", False), ("", False), (None, False),
    ("abc\n", False)])
def test_box_name_problem(name, ok):
    assert (identity.name_problem(name) == "") is ok


def test_status_table():
    instances = [
        {"instance_type": "g5.xlarge", "state": {"name": "running"}, "public_ip_address": "54.1.2.3",
         "launch_time": "2026-11-26T10:00:00+00:00", "tags": {"gpubox:name": "zeta", "gpubox:managed-by": "gpubox"}},
        {"instance_type": "p4d.24xlarge", "state": {"name": "stopped"},
         "launch_time": "2026-11-20T10:00:00+00:00", "tags": {"gpubox:name": "alpha", "gpubox:managed-by": "gpubox"}},
        # A look-alike that gpubox did not make is not listed.
        {"instance_type": "g5.xlarge", "state": {"name": "running"}, "launch_time": "2026-11-26T10:00:00+00:00",
         "tags": {"gpubox:name": "mine"}},
    ]
    lines = planner.status_lines(instances, FAMILIES, QUOTAS, "2026-11-27T12:30:00")
    assert lines[0].split() == ["NAME", "OWNER", "TYPE", "GPUS", "MARKET", "STATE", "PUBLIC", "IP", "UPTIME", "EST.", "$/H",
                                "SPOT", "$/H", "AUTO-STOP", "CAP"]
    assert lines[1].split() == ["alpha", "nobody", "p4d.24xlarge", "8x", "A100", "40GB", "on-demand", "stopped", "-", "-", "0",
                                "(disks", "only)", "-", "-", "-"]
    assert lines[2].split()[0] == "zeta" and lines[2].split()[-7:] == ["running", "54.1.2.3", "1d02h", "1.01", "-", "-", "-"]
    assert len(lines) == 3
    assert planner.status_lines([], FAMILIES, QUOTAS, "2026-11-27T12:30:00") == ["No gpubox boxes in this region."]


@pytest.mark.parametrize("message, code", [
    ("Failed to create new EC2 instance: An error occurred (InsufficientInstanceCapacity) when calling the RunInstances "
     "operation (reached max retries: 4): We currently do not have sufficient g5.xlarge capacity in the Availability Zone",
     "InsufficientInstanceCapacity"),
    ("Failed to create new EC2 instance: An error occurred (VcpuLimitExceeded) when calling the RunInstances operation: "
     "You have requested more vCPU capacity than your current vCPU limit of 0 allows", "VcpuLimitExceeded"),
    ("An error occurred (Unsupported) when calling the RunInstances operation: The requested configuration is not supported",
     "Unsupported"),
    ("An error occurred (InvalidAMIID.NotFound) when calling the RunInstances operation", "InvalidAMIID.NotFound"),
    ("Timeout waiting for instance", ""),
    (None, ""),
])
def test_aws_error_code(message, code):
    assert planner.aws_error_code(message) == code


def test_every_explained_launch_error_is_one_sentence_with_a_way_out():
    errors = yaml.safe_load((REPO / "roles/ec2_box/vars/main.yml").read_text())["__ec2_box_launch_errors"]
    assert {"InsufficientInstanceCapacity", "VcpuLimitExceeded", "Unsupported"} <= set(errors)
    for code, text in errors.items():
        assert text.strip().endswith("."), code
        assert ":" in text, f"{code}: say what to do after the colon"


def test_a_launch_reads_the_offerings_of_the_type_and_its_alternatives():
    assert catalog.offering_candidates("p3.2xlarge", FAMILIES, QUOTAS)[:2] == ["p3.2xlarge", "g4dn.xlarge"]
    assert catalog.offering_candidates("", FAMILIES, QUOTAS)[0] == "g5.xlarge"
    assert catalog.quota_patterns(QUOTAS) == {"L-DB2E81BA": "^(g|vt)", "L-417A185B": "^p"}
