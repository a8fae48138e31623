"""Unit tests for gpubox.box.nvidia_gpu_facts, on files read off a real H100 host.

Run from the repository root: python -m pytest tests/unit/test_nvidia_gpu_facts.py -q
"""

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ansible_collections.gpubox.box.plugins.module_utils import box_nvidia

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures/gpu-host-h100"
SMI_XML = FIXTURES / "nvidia-smi-q.xml"
PROC_VERSION = FIXTURES / "proc-driver-nvidia-version.txt"
QUERY_CSV = FIXTURES / "nvidia-smi-query-gpu.csv"

# What nvidia-smi prints after a driver upgrade while the old kernel module is loaded
# (the second line since about driver 535).
MISMATCH_OUTPUT = "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 580.178\n"


# What the module reads with (shared with gpubox.box.host_gather).
m = box_nvidia


@pytest.fixture
def smi_text():
    return SMI_XML.read_text()


@pytest.fixture
def proc_text():
    return PROC_VERSION.read_text()


@pytest.fixture
def query():
    """nvidia-smi --query-gpu, printed on the same host: an independent source for the expected values."""
    with QUERY_CSV.open() as f:
        rows = list(csv.reader(f, skipinitialspace=True))
    return dict(zip(rows[0], rows[1]))


def edited(smi_text, edit):
    """The fixture XML with edit(root) applied."""
    root = ET.fromstring(smi_text)
    edit(root)
    return ET.tostring(root, encoding="unicode")


def set_text(gpu, path, value):
    gpu.find(path).text = value


# ---------------------------------------------------------------- the real H100 host


def test_h100_driver_and_cuda(smi_text):
    smi = m.parse_smi_xml(smi_text)
    assert smi["driver_version"] == "580.159.04"
    assert smi["cuda_version"] == "13.0"
    assert len(smi["gpus"]) == 1


def test_h100_gpu(smi_text, query):
    gpu = m.parse_smi_xml(smi_text)["gpus"][0]
    assert gpu["index"] == 0
    assert gpu["minor_number"] == 0
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" == query["name"]
    assert gpu["architecture"] == "Hopper"
    assert gpu["uuid"] == "GPU-00000000-0000-0000-0000-000000000000"
    assert gpu["pci_bus_id"] == "00000000:00:06.0" == query["pci.bus_id"]
    assert gpu["memory_total_mib"] == 81559
    assert query["memory.total [MiB]"] == "81559 MiB"
    assert gpu["memory_used_mib"] == 0
    # The XML has no compute capability; the table must agree with nvidia-smi --query-gpu=compute_cap.
    assert gpu["compute_capability"] == "9.0" == query["compute_cap"]
    assert gpu["compute_capability_source"] == "table"
    assert gpu["persistence_mode"] is True and query["persistence_mode"] == "Enabled"
    assert gpu["ecc_mode"] == {"current": True, "pending": True}
    assert gpu["mig_mode"] == {"current": False, "pending": False}
    assert gpu["mig_device_count"] == 0
    assert gpu["clocks"] == {"graphics_mhz": 375, "sm_mhz": 375, "memory_mhz": 2619}
    assert gpu["power_limit_w"] == 700.0
    assert gpu["power_draw_w"] == 111.65
    assert gpu["utilization"] == {"gpu_percent": 0, "memory_percent": 0}


def test_h100_proc_version_is_the_open_module(proc_text):
    assert m.parse_proc_version(proc_text) == {"version": "580.159.04", "flavor": "open"}


def test_proprietary_module_flavor(proc_text):
    # The proprietary module's line: "NVIDIA UNIX x86_64 Kernel Module  <version>  <build date>".
    text = proc_text.replace("NVIDIA UNIX Open Kernel Module for x86_64", "NVIDIA UNIX x86_64 Kernel Module")
    assert m.parse_proc_version(text) == {"version": "580.159.04", "flavor": "proprietary"}


def test_h100_facts(smi_text, proc_text):
    facts = m.build_facts(smi=m.parse_smi_xml(smi_text), proc=m.parse_proc_version(proc_text),
                          nvidia_smi_path="/usr/bin/nvidia-smi")
    assert facts["present"] is True
    assert facts["reason"] == ""
    assert facts["nvidia_smi_path"] == "/usr/bin/nvidia-smi"
    assert facts["driver_version"] == "580.159.04"
    assert facts["cuda_version"] == "13.0"
    assert facts["kernel_module_version"] == "580.159.04"
    assert facts["kernel_module_flavor"] == "open"
    assert facts["library_version"] == "580.159.04"
    assert facts["mismatch"] is False
    assert facts["mismatch_message"] == ""
    assert facts["gpu_count"] == 1
    assert facts["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"


# ---------------------------------------------------------------- edge cases built from the fixture


def test_several_gpus(smi_text):
    def four_gpus(root):
        first = root.find("gpu")
        for n in range(1, 4):
            gpu = copy.deepcopy(first)
            bus_id = f"00000000:00:{6 + n:02X}.0"
            gpu.set("id", bus_id)
            set_text(gpu, "pci/pci_bus_id", bus_id)
            set_text(gpu, "minor_number", str(n))
            set_text(gpu, "uuid", f"GPU-{n}")
            set_text(gpu, "utilization/gpu_util", f"{25 * n} %")
            root.append(gpu)
        set_text(root, "attached_gpus", "4")

    gpus = m.parse_smi_xml(edited(smi_text, four_gpus))["gpus"]
    assert [g["index"] for g in gpus] == [0, 1, 2, 3]
    assert [g["minor_number"] for g in gpus] == [0, 1, 2, 3]
    assert [g["pci_bus_id"] for g in gpus] == [f"00000000:00:0{n}.0" for n in (6, 7, 8, 9)]
    assert [g["utilization"]["gpu_percent"] for g in gpus] == [0, 25, 50, 75]
    assert all(g["name"] == "NVIDIA H100 80GB HBM3" and g["memory_total_mib"] == 81559 for g in gpus)
    facts = m.build_facts(smi={"driver_version": "580.159.04", "cuda_version": "13.0", "gpus": gpus})
    assert facts["gpu_count"] == 4


def test_mig_enabled_with_instances(smi_text):
    def mig_on(root):
        gpu = root.find("gpu")
        set_text(gpu, "mig_mode/current_mig", "Enabled")
        set_text(gpu, "mig_mode/pending_mig", "Enabled")
        devices = gpu.find("mig_devices")
        devices.text = None
        for n in range(2):
            device = ET.SubElement(devices, "mig_device")
            ET.SubElement(device, "index").text = str(n)

    gpu = m.parse_smi_xml(edited(smi_text, mig_on))["gpus"][0]
    assert gpu["mig_mode"] == {"current": True, "pending": True}
    assert gpu["mig_device_count"] == 2


def test_mig_pending_until_reset(smi_text):
    xml = edited(smi_text, lambda root: set_text(root.find("gpu"), "mig_mode/pending_mig", "Enabled"))
    assert m.parse_smi_xml(xml)["gpus"][0]["mig_mode"] == {"current": False, "pending": True}


@pytest.mark.parametrize("current, pending, expected", [
    ("Disabled", "Disabled", {"current": False, "pending": False}),
    ("Disabled", "Enabled", {"current": False, "pending": True}),
    ("N/A", "N/A", {"current": None, "pending": None}),  # a GPU without ECC
])
def test_ecc_mode(smi_text, current, expected, pending):
    def ecc(root):
        set_text(root.find("gpu"), "ecc_mode/current_ecc", current)
        set_text(root.find("gpu"), "ecc_mode/pending_ecc", pending)

    assert m.parse_smi_xml(edited(smi_text, ecc))["gpus"][0]["ecc_mode"] == expected


def test_persistence_mode_off(smi_text):
    xml = edited(smi_text, lambda root: set_text(root.find("gpu"), "persistence_mode", "Disabled"))
    assert m.parse_smi_xml(xml)["gpus"][0]["persistence_mode"] is False


def test_values_reported_as_na_are_null(smi_text):
    def na(root):
        gpu = root.find("gpu")
        for path in ("gpu_power_readings/current_power_limit", "clocks/sm_clock", "utilization/gpu_util"):
            set_text(gpu, path, "N/A")

    gpu = m.parse_smi_xml(edited(smi_text, na))["gpus"][0]
    assert gpu["power_limit_w"] is None
    assert gpu["clocks"]["sm_mhz"] is None
    assert gpu["utilization"]["gpu_percent"] is None
    assert gpu["clocks"]["graphics_mhz"] == 375


def test_power_readings_of_older_drivers(smi_text):
    # Before driver 535 the element was <power_readings> with <power_limit> and <power_draw>.
    def old(root):
        gpu = root.find("gpu")
        gpu.remove(gpu.find("gpu_power_readings"))
        readings = ET.SubElement(gpu, "power_readings")
        ET.SubElement(readings, "power_draw").text = "61.50 W"
        ET.SubElement(readings, "power_limit").text = "400.00 W"

    gpu = m.parse_smi_xml(edited(smi_text, old))["gpus"][0]
    assert (gpu["power_limit_w"], gpu["power_draw_w"]) == (400.0, 61.5)


@pytest.mark.parametrize("name, architecture, expected", [
    ("NVIDIA A10G", "Ampere", "8.6"),
    ("NVIDIA A100-SXM4-40GB", "Ampere", "8.0"),
    ("Tesla T4", "Turing", "7.5"),
    ("NVIDIA L4", "Ada Lovelace", "8.9"),
    ("NVIDIA L40S", "Ada Lovelace", "8.9"),
    ("Tesla V100-SXM2-16GB", "Volta", "7.0"),
    ("Tesla K80", "Kepler", "3.7"),
    ("Tesla M60", "Maxwell", "5.2"),
    ("NVIDIA H200", "Hopper", "9.0"),
    ("NVIDIA B200", "Blackwell", "10.0"),
    ("NVIDIA GeForce RTX 5090", "Ada Lovelace", "12.0"),
    ("Some future GPU", "Unknown", None),
])
def test_compute_capability_from_name_and_architecture(smi_text, name, architecture, expected):
    def product(root):
        set_text(root.find("gpu"), "product_name", name)
        set_text(root.find("gpu"), "product_architecture", architecture)

    gpu = m.parse_smi_xml(edited(smi_text, product))["gpus"][0]
    assert gpu["compute_capability"] == expected
    assert gpu["compute_capability_source"] == ("table" if expected else None)


def test_compute_capability_from_the_xml_wins(smi_text):
    def with_compute_cap(root):
        ET.SubElement(root.find("gpu"), "compute_cap").text = "9.0"

    gpu = m.parse_smi_xml(edited(smi_text, with_compute_cap))["gpus"][0]
    assert (gpu["compute_capability"], gpu["compute_capability_source"]) == ("9.0", "nvidia-smi")


def test_warning_before_the_xml_is_skipped(smi_text):
    text = "WARNING: infoROM is corrupted at gpu 00000000:00:06.0\n" + smi_text
    assert m.split_preamble(text)[0] == "WARNING: infoROM is corrupted at gpu 00000000:00:06.0"
    assert m.parse_smi_xml(text)["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"


# ---------------------------------------------------------------- no driver


def test_no_driver_at_all():
    facts = m.build_facts()
    assert facts["present"] is False
    assert "nvidia-smi is not installed" in facts["reason"]
    assert "/proc/driver/nvidia/version is absent" in facts["reason"]
    assert facts["gpus"] == [] and facts["gpu_count"] == 0
    assert facts["driver_version"] is None and facts["mismatch"] is False


def test_nvidia_smi_installed_but_module_not_loaded():
    error = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
             "Make sure that the latest NVIDIA driver is installed and running.")
    facts = m.build_facts(smi_error=error, nvidia_smi_path="/usr/bin/nvidia-smi")
    assert facts["present"] is False
    assert "No NVIDIA kernel module is loaded" in facts["reason"]
    assert "couldn't communicate with the NVIDIA driver" in facts["reason"]


def test_module_loaded_but_no_nvidia_smi(proc_text):
    facts = m.build_facts(proc=m.parse_proc_version(proc_text))
    assert facts["present"] is True
    assert facts["driver_version"] == facts["kernel_module_version"] == "580.159.04"
    assert facts["gpus"] == []
    assert "nvidia-smi is not installed" in facts["reason"]


# ---------------------------------------------------------------- driver/library mismatch


def test_mismatch_when_proc_differs_from_the_xml(smi_text, proc_text):
    older = proc_text.replace("580.159.04", "580.126.09")
    facts = m.build_facts(smi=m.parse_smi_xml(smi_text), proc=m.parse_proc_version(older))
    assert facts["mismatch"] is True
    assert facts["kernel_module_version"] == "580.126.09"
    assert facts["library_version"] == "580.159.04"
    assert "580.126.09" in facts["mismatch_message"] and "580.159.04" in facts["mismatch_message"]
    assert "reboot" in facts["mismatch_message"]
    assert facts["reason"] == facts["mismatch_message"]


def test_mismatch_from_nvidia_smi_output(proc_text):
    facts = m.build_facts(smi_error=MISMATCH_OUTPUT, proc=m.parse_proc_version(proc_text),
                          nvidia_smi_path="/usr/bin/nvidia-smi")
    assert facts["present"] is True
    assert facts["mismatch"] is True
    assert facts["kernel_module_version"] == "580.159.04"
    assert facts["driver_version"] == "580.159.04"  # the loaded module's, from /proc
    assert facts["kernel_module_flavor"] == "open"
    assert facts["library_version"] == "580.178"
    assert facts["gpus"] == []
    message = facts["mismatch_message"]
    assert "Driver/library version mismatch" in message
    assert "580.159.04" in message and "580.178" in message
    assert "a reboot is the usual fix" in message


def test_mismatch_output_without_library_line_uses_the_library_file(proc_text):
    facts = m.build_facts(smi_error="Failed to initialize NVML: Driver/library version mismatch\n",
                          proc=m.parse_proc_version(proc_text), library_version="580.178.04")
    assert facts["mismatch"] is True
    assert facts["library_version"] == "580.178.04"


def test_mismatch_text_alone_is_enough():
    mismatch, message = m.detect_mismatch(None, None, "Failed to initialize NVML: Driver/library version mismatch")
    assert mismatch is True
    assert "unknown version" in message and "reboot" in message


@pytest.mark.parametrize("kernel, library, expected", [
    ("580.159.04", "580.159.04", False),
    ("580.178.04", "580.178", False),  # NVML's line has only major.minor
    ("580.173.02", "580.178", True),
    ("580.159.04", None, False),
    (None, "580.159.04", False),
])
def test_detect_mismatch_by_version(kernel, library, expected):
    assert m.detect_mismatch(kernel, library)[0] is expected


def test_library_version_from_file_names():
    names = ["/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
             "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.159.04",
             "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.82.07"]
    assert m.library_version_from_files(names) == "580.159.04"
    assert m.library_version_from_files(["/usr/lib/libnvidia-ml.so.1"]) is None


# ---------------------------------------------------------------- malformed XML


def test_truncated_xml_is_a_clear_error(smi_text):
    with pytest.raises(m.SmiXmlError, match=r"not well-formed: .*line \d+"):
        m.parse_smi_xml(smi_text[: len(smi_text) // 2])


def test_empty_output_is_a_clear_error():
    with pytest.raises(m.SmiXmlError, match="empty"):
        m.parse_smi_xml("  \n")


def test_other_xml_is_a_clear_error():
    with pytest.raises(m.SmiXmlError, match="<nvidia_smi_log>"):
        m.parse_smi_xml("<html><body>no</body></html>")


# ---------------------------------------------------------------- the module as Ansible runs it


def run_module(args):
    """Run the module with `ansible localhost -c local` from the repository root; return its result."""
    ansible = Path(sys.executable).with_name("ansible")
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="true", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_NOCOLOR="true")
    command = [str(ansible) if ansible.exists() else "ansible", "localhost", "-c", "local",
               "-m", "gpubox.box.nvidia_gpu_facts"]
    if args:
        command += ["-a", args]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.lstrip().startswith("{"), proc.stdout + proc.stderr
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_ansible_runs_the_module_on_the_h100_fixture():
    result = run_module(f"nvidia_smi_xml={SMI_XML} proc_version_path={PROC_VERSION}")
    assert not result.get("failed"), result
    assert result["changed"] is False
    facts = result["ansible_facts"]["nvidia_gpu"]
    assert facts["present"] is True
    assert (facts["driver_version"], facts["cuda_version"]) == ("580.159.04", "13.0")
    assert (facts["kernel_module_version"], facts["kernel_module_flavor"]) == ("580.159.04", "open")
    assert facts["mismatch"] is False
    assert facts["gpu_count"] == 1
    gpu = facts["gpus"][0]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["memory_total_mib"] == 81559
    assert gpu["compute_capability"] == "9.0"
    assert gpu["pci_bus_id"] == "00000000:00:06.0"


def test_ansible_reports_a_mismatch_as_a_warning(tmp_path):
    proc = tmp_path / "version"
    proc.write_text(PROC_VERSION.read_text().replace("580.159.04", "580.126.09"))
    result = run_module(f"nvidia_smi_xml={SMI_XML} proc_version_path={proc}")
    assert result["ansible_facts"]["nvidia_gpu"]["mismatch"] is True
    assert any("reboot" in w for w in result.get("warnings", [])), result


def test_ansible_fails_clearly_on_malformed_xml(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text(SMI_XML.read_text()[:5000])
    result = run_module(f"nvidia_smi_xml={bad} proc_version_path={PROC_VERSION}")
    assert result["failed"] is True
    assert str(bad) in result["msg"] and "not well-formed" in result["msg"]


def test_ansible_fails_on_a_missing_xml_file(tmp_path):
    result = run_module(f"nvidia_smi_xml={tmp_path / 'absent.xml'}")
    assert result["failed"] is True
    assert "does not exist" in result["msg"]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None or os.path.exists("/proc/driver/nvidia/version"),
                    reason="this machine has an NVIDIA driver")
def test_ansible_on_this_machine_without_a_driver():
    result = run_module(None)
    assert not result.get("failed"), result
    facts = result["ansible_facts"]["nvidia_gpu"]
    assert facts["present"] is False
    assert "nvidia-smi is not installed" in facts["reason"]
    assert facts["gpus"] == []


# ---------------------------------------------------------------- what gpu_check's reuse depends on


@pytest.fixture
def env(tmp_path):
    """An environment as python_envs leaves it: an interpreter, installed packages and gpubox's install marker."""
    prefix = tmp_path / "envs" / "tensorflow"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").symlink_to(sys.executable)
    site = prefix / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "keras-3.15.1.dist-info").mkdir()
    (prefix / ".gpubox-pip-abc123").write_text("")
    return prefix


@pytest.mark.parametrize("change", [
    lambda prefix, boot: (prefix / "lib/python3.11/site-packages/keras-3.15.1.dist-info").rename(
        prefix / "lib/python3.11/site-packages/keras-3.16.0.dist-info"),
    lambda prefix, boot: (prefix / ".gpubox-pip-abc123").rename(prefix / ".gpubox-pip-def456"),
    lambda prefix, boot: (prefix / "lib/python3.11/site-packages/extra.pth").write_text(""),
    lambda prefix, boot: boot.write_text("another boot\n"),
    # A file name that is not UTF-8 is read as it is.
    lambda prefix, boot: open(os.fsencode(prefix / "lib/python3.11/site-packages") + b"/bad\xff.pth", "w").close(),
])
def test_the_fingerprint_follows_packages_markers_and_the_boot(env, tmp_path, change):
    boot = tmp_path / "boot_id"
    boot.write_text("one boot\n")
    pythons = [str(env / "bin" / "python")]
    first = m.fingerprint(pythons, boot_id_path=str(boot))
    assert m.fingerprint(pythons, boot_id_path=str(boot)) == first
    change(env, boot)
    assert m.fingerprint(pythons, boot_id_path=str(boot)) != first


def test_the_last_check_is_believed_only_as_roots_own_plain_file(tmp_path):
    state = tmp_path / "gpu-check.json"
    state.write_text('{"inputs": "x", "probes": []}\n')
    state.chmod(0o600)
    assert m.last_check(str(state)) == {"inputs": "x", "probes": []}
    state.chmod(0o644)  # another user could have written it
    assert m.last_check(str(state)) is None
    state.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(state)
    assert m.last_check(str(link)) is None
    state.write_text("not json")
    assert m.last_check(str(state)) is None and m.last_check(str(tmp_path / "none.json")) is None
    # In a folder another user may change, it could be swapped: not believed.
    state.write_text('{"inputs": "x", "probes": []}\n')
    assert m.last_check(str(state)) is not None
    tmp_path.chmod(0o777)
    assert m.last_check(str(state)) is None
    tmp_path.chmod(0o700)


def test_the_module_returns_the_fingerprint_and_the_last_check_with_the_facts(env, tmp_path):
    state = tmp_path / "gpu-check.json"
    state.write_text('{"inputs": "x", "probes": []}\n')
    state.chmod(0o600)
    out = run_module(json.dumps({"nvidia_smi_xml": str(SMI_XML), "proc_version_path": str(PROC_VERSION),
                                 "fingerprint_pythons": [str(env / "bin" / "python")], "state_file": str(state)}))
    assert len(out["fingerprint"]) == 64 and out["last_check"] == {"inputs": "x", "probes": []}
    assert out["ansible_facts"]["nvidia_gpu"]["present"] is True
    plain = run_module(f"nvidia_smi_xml={SMI_XML} proc_version_path={PROC_VERSION}")
    assert plain["fingerprint"] == "" and plain["last_check"] is None
