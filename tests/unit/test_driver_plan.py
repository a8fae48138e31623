"""Table-driven tests of the NVIDIA driver and CUDA decisions (gpubox.box filters in nvidia.py).

Loads the same data the roles use: catalog/instance_types.yml and roles/nvidia_driver/vars/main.yml.
Every catalog family is checked on every target OS. The expected package names and steps are NVIDIA's Driver
Installation Guide's (the nvidia_driver role's README cites the pages).
"""

import importlib.util
import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILTERS = ROOT / "collections/ansible_collections/gpubox/box/plugins/filter"


def _load_module(name):
    spec = importlib.util.spec_from_file_location(f"gpubox_filter_{name}", FILTERS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nvidia = _load_module("nvidia")
catalog_filters = _load_module("catalog")

CATALOG = yaml.safe_load((ROOT / "catalog/instance_types.yml").read_text())
DRIVER_VARS = yaml.safe_load((ROOT / "roles/nvidia_driver/vars/main.yml").read_text())
PLATFORMS = DRIVER_VARS["__nvidia_driver_platforms"]
ARCHITECTURES = DRIVER_VARS["__nvidia_driver_architectures"]
PCI_IDS = DRIVER_VARS["__nvidia_driver_pci_ids"]
MIN_BRANCH = DRIVER_VARS["__nvidia_driver_cuda_min_branch"]
KERNEL = "6.8.0-1021-aws"

# Facts as Ansible reports them: (ansible_distribution, ansible_distribution_version).
OSES = {
    "ubuntu-24.04": ("Ubuntu", "24.04"),
    "ubuntu-22.04": ("Ubuntu", "22.04"),
    "amazon-2023": ("Amazon", "2023"),
    "debian-12": ("Debian", "12.8"),
}

# Per OS: the repository, the branch lock, driver packages by flavor, Fabric Manager packages, hold method.
# Ubuntu and Debian: NVIDIA's pinning package for the branch first, then the unversioned driver.
APT_LOCK = {"method": "package", "packages": ["nvidia-driver-pinning-580"]}
APT = {"open": ["nvidia-open"], "proprietary": ["cuda-drivers"], "fm": ["nvidia-fabricmanager"], "hold": "apt",
       "prereq": ["dkms", f"linux-headers-{KERNEL}"],
       # A box set up before the pinning method has the branch-named packages: they count as gpubox's and are kept.
       "check": {"open": ["nvidia-driver-pinning-580", "nvidia-open-580"],
                 "proprietary": ["nvidia-driver-pinning-580", "cuda-drivers-580"]},
       "legacy": {"open": ["nvidia-open-580"], "proprietary": ["cuda-drivers-580"], "fm": ["nvidia-fabricmanager-580"]}}
OS_EXPECTED = {
    "ubuntu-24.04": {
        "repo": "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/cuda-keyring_1.1-1_all.deb",
        "lock": {"open": APT_LOCK, "proprietary": APT_LOCK}, **APT,
    },
    "ubuntu-22.04": {
        "repo": "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64/cuda-keyring_1.1-1_all.deb",
        "lock": {"open": APT_LOCK, "proprietary": APT_LOCK}, **APT,
    },
    "debian-12": {
        "repo": "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb",
        "lock": {"open": APT_LOCK, "proprietary": APT_LOCK}, **APT,
    },
    # Amazon Linux 2023: the branch is a dnf module stream, then the unversioned driver; Fabric Manager a plain package.
    "amazon-2023": {
        "repo": "https://developer.download.nvidia.com/compute/cuda/repos/amzn2023/x86_64/cuda-amzn2023.repo",
        "lock": {"open": {"method": "dnf-module", "module": "nvidia-driver", "stream": "580-open"},
                 "proprietary": {"method": "dnf-module", "module": "nvidia-driver", "stream": "580-dkms"}},
        "open": ["nvidia-open"], "proprietary": ["cuda-drivers"], "fm": ["nvidia-fabricmanager"],
        "hold": "versionlock",
        "check": {"open": ["nvidia-open", "nvidia-driver"], "proprietary": ["cuda-drivers", "nvidia-driver"]},
        "legacy": {"open": [], "proprietary": [], "fm": []},
        "prereq": ["dkms", f"kernel-devel-{KERNEL}", f"kernel-modules-extra-{KERNEL}",
                   f"kernel-modules-extra-common-{KERNEL}", "python3-dnf-plugin-versionlock"],
    },
}

# Per catalog family: (module flavor, Fabric Manager, extra FM packages, newest CUDA major) or the error's words.
FAMILY_EXPECTED = {
    "g4dn": ("open", False, [], 13),
    "g5": ("open", False, [], 13),
    "g6": ("open", False, [], 13),
    "g6e": ("open", False, [], 13),
    "gr6": ("open", False, [], 13),
    "p4d": ("open", True, [], 13),
    "p4de": ("open", True, [], 13),
    "p5": ("open", True, [], 13),
    "p5e": ("open", True, [], 13),
    "p5en": ("open", True, [], 13),
    "p6-b200": ("open", True, ["nvlsm"], 13),
    "p3": ("proprietary", False, [], 12),
    "p3dn": ("proprietary", False, [], 12),
    "p2": "Kepler GPUs lost NVIDIA driver support after branch 470",
    "g3": "Maxwell GPUs are on their last driver branch",
    "g3s": "Maxwell GPUs are on their last driver branch",
    "g4ad": "gpubox sets up NVIDIA GPUs only",
}


def entry(family):
    size = next(iter(CATALOG["gpubox_instance_families"][family]["sizes"]))
    return catalog_filters.instance_type(
        f"{family}.{size}", CATALOG["gpubox_instance_families"], CATALOG["gpubox_quota_groups"]
    )


def plan(family_entry, os_name="ubuntu-24.04", **kwargs):
    os_id, os_version = OSES[os_name]
    kwargs.setdefault("kernel", KERNEL)
    kwargs.setdefault("cuda_min_branch", MIN_BRANCH)
    return nvidia.driver_plan(family_entry, os_id, os_version, PLATFORMS, ARCHITECTURES, **kwargs)


def test_every_catalog_family_has_an_expectation():
    assert set(FAMILY_EXPECTED) == set(CATALOG["gpubox_instance_families"])


def test_every_target_os_has_a_platform_row():
    assert set(PLATFORMS) == set(OS_EXPECTED)


@pytest.mark.parametrize("os_name", sorted(OSES))
@pytest.mark.parametrize("family", sorted(FAMILY_EXPECTED))
def test_driver_plan(family, os_name):
    expected = FAMILY_EXPECTED[family]
    if isinstance(expected, str):
        with pytest.raises(nvidia.AnsibleFilterError, match=expected) as failure:
            plan(entry(family), os_name)
        assert "g4dn.xlarge" in str(failure.value) or "g6.xlarge" in str(failure.value)
        return
    flavor, fabric_manager, fm_extra, max_cuda = expected
    os_expected = OS_EXPECTED[os_name]
    result = plan(entry(family), os_name)
    assert result["os"] == os_name
    assert result["branch"] == "580"
    assert result["module_flavor"] == flavor
    assert result["driver_packages"] == os_expected[flavor]
    assert result["branch_lock"] == os_expected["lock"][flavor]
    assert result["driver_check_packages"] == os_expected["check"][flavor]
    assert result["legacy_packages"] == os_expected["legacy"][flavor] + (os_expected["legacy"]["fm"] if fabric_manager else [])
    assert result["branch_packages"] == os_expected[flavor] + (os_expected["fm"] if fabric_manager else [])
    assert result["prerequisite_packages"] == os_expected["prereq"]
    assert result["repo"]["url"] == os_expected["repo"]
    assert result["hold_method"] == os_expected["hold"]
    assert result["fabric_manager"] is fabric_manager
    if fabric_manager:
        assert result["fabric_manager_packages"] == os_expected["fm"] + fm_extra
        assert result["fabric_manager_service"] == "nvidia-fabricmanager"
        assert result["reboot_timeout"] == 1800
    else:
        assert result["fabric_manager_packages"] == []
        assert result["fabric_manager_service"] == ""
        assert result["reboot_timeout"] == 900
    assert result["reboot_rule"] == "driver-changed-or-version-mismatch"
    assert result["max_cuda_major"] == max_cuda
    assert result["compute_capability"] == CATALOG["gpubox_instance_families"][family]["compute_capability"]
    assert result["cuda_min_branch"] == {"11": 450, "12": 525, "13": 580}


@pytest.mark.parametrize("os_name", sorted(OSES))
def test_hold_pattern_holds_the_driver_but_not_the_container_toolkit(os_name):
    import re

    pattern = re.compile(plan(entry("g5"), os_name)["hold_pattern"])
    held = {
        "ubuntu-24.04": ["nvidia-open", "nvidia-driver-pinning-580", "libnvidia-compute", "nvidia-dkms-open",
                         "nvidia-fabricmanager", "cuda-drivers", "xserver-xorg-video-nvidia", "nvidia-open-580",
                         "libnvidia-compute-580"],
        "amazon-2023": ["nvidia-open", "nvidia-driver", "nvidia-driver-cuda-libs", "kmod-nvidia-open-dkms",
                        "nvidia-fabricmanager", "cuda-drivers"],
    }.get(os_name, ["nvidia-open", "nvidia-driver-pinning-580", "libnvidia-compute"])
    for name in held:
        assert pattern.match(name), name
    for name in ["nvidia-container-toolkit", "libnvidia-container1", "cuda-toolkit-12-8", "linux-headers-aws", "python3"]:
        assert not pattern.match(name), name


@pytest.mark.parametrize(
    ("os_id", "os_version"),
    [("Ubuntu", "20.04"), ("Amazon", "2"), ("CentOS", "9"), ("Debian", "11.9")],
)
def test_unsupported_os_fails_and_names_the_supported_ones(os_id, os_version):
    with pytest.raises(nvidia.AnsibleFilterError, match="is not supported") as failure:
        nvidia.driver_plan(entry("g5"), os_id, os_version, PLATFORMS, ARCHITECTURES, kernel=KERNEL)
    assert "ubuntu-24.04" in str(failure.value) and "amazon-2023" in str(failure.value)


def test_volta_cannot_take_a_branch_after_580():
    with pytest.raises(nvidia.AnsibleFilterError, match="580 is the last driver branch for volta"):
        plan(entry("p3"), branch="590")


def test_newer_branch_is_fine_for_hopper():
    result = plan(entry("p5"), branch="590")
    assert result["branch_lock"]["packages"] == ["nvidia-driver-pinning-590"]
    assert result["driver_packages"] == ["nvidia-open"]
    assert plan(entry("p5"), "amazon-2023", branch="595")["branch_lock"]["stream"] == "595-open"


def test_amazon_linux_extra_modules_are_named_without_the_arch():
    kernel = "6.1.158-180.294.amzn2023.x86_64"
    result = plan(entry("p5"), "amazon-2023", kernel=kernel)
    assert result["prerequisite_packages"] == [
        "dkms", f"kernel-devel-{kernel}", "kernel-modules-extra-6.1.158-180.294.amzn2023",
        "kernel-modules-extra-common-6.1.158-180.294.amzn2023", "python3-dnf-plugin-versionlock"]
    arm = plan(entry("p5"), "amazon-2023", kernel="6.12.40-64.114.amzn2023.aarch64", machine="aarch64")
    assert "kernel-modules-extra-common-6.12.40-64.114.amzn2023" in arm["prerequisite_packages"]


def test_blackwell_needs_branch_570():
    with pytest.raises(nvidia.AnsibleFilterError, match="need driver branch 570 or newer"):
        plan(entry("p6-b200"), branch="565")


def test_branch_must_be_a_number():
    with pytest.raises(nvidia.AnsibleFilterError, match="not a driver branch"):
        plan(entry("g5"), branch="latest")


def test_arm_host_uses_the_sbsa_repository_where_there_is_one():
    assert "/ubuntu2404/sbsa/" in plan(entry("g5"), machine="aarch64")["repo"]["url"]
    with pytest.raises(nvidia.AnsibleFilterError, match="has no aarch64 packages"):
        plan(entry("g5"), "debian-12", machine="aarch64")


def test_unknown_instance_type_without_known_pci_id_asks_for_the_type():
    with pytest.raises(nvidia.AnsibleFilterError, match="nvidia_driver_instance_type"):
        plan({})


def test_catalog_flavor_must_agree_with_the_architecture():
    wrong = dict(entry("p3"), module_flavor="open")
    with pytest.raises(nvidia.AnsibleFilterError, match="Fix catalog/instance_types.yml"):
        plan(wrong)


# What the real H100 host (tests/fixtures/gpu-host-h100) printed, and what this GPU-less VM has.
H100_PCI = ["0x10de 0x2330 0x030200"]
HGX_PCI = ["0x10de 0x2330 0x030200"] * 8 + ["0x10de 0x22a3 0x068000"] * 4 + ["0x8086 0x0d57 0x060000"]
NO_GPU_PCI = ["0x8086 0x0d57 0x060000", "0x1af4 0x1045 0xffff00", "0x1af4 0x1042 0x018000"]
H100_PROC_VERSION = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)\n"
H100_SMI_CSV = "NVIDIA H100 80GB HBM3, 580.159.04, 81559 MiB\n"
H100_NVCC = (
    "nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2025 NVIDIA Corporation\n"
    "Built on Wed_Aug_20_01:58:59_PM_PDT_2025\nCuda compilation tools, release 13.0, V13.0.88\n"
    "Build cuda_13.0.r13.0/compiler.36424714_0\n"
)


@pytest.mark.parametrize(
    ("lines", "present"),
    [(H100_PCI, True), (HGX_PCI, True), (NO_GPU_PCI, False), ([], False), ("0x10de 0x22a3 0x068000", False)],
)
def test_gpu_presence_from_pci(lines, present):
    assert nvidia.nvidia_gpu_present(lines) is present


def test_gpu_from_pci_gives_a_plan_when_the_type_is_unknown():
    single = nvidia.gpu_from_pci(H100_PCI, PCI_IDS)
    assert single["architecture"] == "hopper" and single["nvswitch"] is False
    assert plan(single)["fabric_manager"] is False
    hgx = nvidia.gpu_from_pci(HGX_PCI, PCI_IDS)
    assert hgx["gpus"] == 8 and hgx["nvswitch"] is True
    assert plan(hgx)["fabric_manager_packages"] == ["nvidia-fabricmanager"]
    assert plan(hgx)["compute_capability"] == "9.0"
    assert nvidia.gpu_from_pci(NO_GPU_PCI, PCI_IDS) == {}
    with pytest.raises(nvidia.AnsibleFilterError, match="Maxwell"):
        plan(nvidia.gpu_from_pci(["0x10de 0x13f2 0x030000"], PCI_IDS))


def test_pci_table_covers_every_architecture_it_names():
    assert {row["architecture"] for row in PCI_IDS.values()} <= set(ARCHITECTURES)


@pytest.mark.parametrize(
    ("text", "version"),
    [(H100_PROC_VERSION, "580.159.04"), (H100_SMI_CSV, "580.159.04"), ("570.86", "570.86"), ("", ""),
     ("NVIDIA-SMI has failed", "")],
)
def test_driver_version(text, version):
    assert nvidia.driver_version(text) == version


@pytest.mark.parametrize(
    ("changed", "loaded", "installed", "reboot"),
    [
        (True, "", "580.95.05", "installed or changed"),
        (True, "580.95.05", "580.95.05", "installed or changed"),
        (False, "", "580.95.05", "not loaded"),
        (False, "570.86.15", "580.95.05", "Driver/library version mismatch"),
        (False, "580.95.05", "580.95.05", ""),
        (False, "", "", ""),
        (False, "580.159.04\n", "580.159.04", ""),
    ],
)
def test_reboot_rule(changed, loaded, installed, reboot):
    reason = nvidia.reboot_reason(changed, loaded, installed)
    assert (reboot in reason) if reboot else reason == ""


@pytest.mark.parametrize("os_name", sorted(OSES))
@pytest.mark.parametrize(
    ("family", "version", "package"),
    [("g5", "12.8", "cuda-toolkit-12-8"), ("p5", "13.0", "cuda-toolkit-13-0"), ("p3", "12.8", "cuda-toolkit-12-8")],
)
def test_cuda_install(family, version, package, os_name):
    result = nvidia.cuda_plan(plan(entry(family), os_name), version, "auto")
    assert result == {"action": "install", "version": version, "package": package,
                      "home": f"/usr/local/cuda-{version}", "reason": result["reason"]}


def test_cuda_13_refuses_volta():
    with pytest.raises(nvidia.AnsibleFilterError, match="cuda_version=12.8"):
        nvidia.cuda_plan(plan(entry("p3")), "13.0", "auto")


def test_cuda_13_needs_branch_580():
    with pytest.raises(nvidia.AnsibleFilterError, match="needs driver branch 580"):
        nvidia.cuda_plan(plan(entry("g5"), branch="570"), "13.0", "auto")


@pytest.mark.parametrize("version", ["12", "12.8.1", "latest", ""])
def test_cuda_version_must_be_major_minor(version):
    with pytest.raises(nvidia.AnsibleFilterError, match="MAJOR.MINOR"):
        nvidia.cuda_plan(plan(entry("g5")), version, "auto")


def test_cuda_toolkits_older_than_12_are_not_installed():
    with pytest.raises(nvidia.AnsibleFilterError, match="12.x or newer toolkits"):
        nvidia.cuda_plan(plan(entry("g5")), "11.8", "auto")


def test_cuda_unknown_major_fails():
    with pytest.raises(nvidia.AnsibleFilterError, match="not in the driver role's CUDA table"):
        nvidia.cuda_plan(dict(plan(entry("g5")), max_cuda_major=14), "14.0", "auto")


def test_cuda_skip():
    assert nvidia.cuda_plan(plan(entry("g5")), "12.8", "skip")["action"] == "skip"


@pytest.mark.parametrize("link", ["/usr/local/cuda-12.4", "cuda-12.4", "/usr/local/cuda-12.4/"])
def test_cuda_on_a_deep_learning_ami_follows_the_link(link):
    result = nvidia.cuda_plan(plan(entry("g6")), "12.8", "auto", preinstalled=True, link_target=link)
    assert (result["action"], result["version"], result["package"], result["home"]) == (
        "verify", "12.4", "", "/usr/local/cuda-12.4")


def test_cuda_on_a_deep_learning_ami_without_link_fails():
    with pytest.raises(nvidia.AnsibleFilterError, match="cuda_toolkit=skip"):
        nvidia.cuda_plan(plan(entry("g6")), "12.8", "auto", preinstalled=True, link_target="")


def test_cuda_bad_mode_fails():
    with pytest.raises(nvidia.AnsibleFilterError, match="not one of auto, skip"):
        nvidia.cuda_plan(plan(entry("g6")), "12.8", "install")


def test_nvcc_release():
    assert nvidia.nvcc_release(H100_NVCC) == "13.0"
    assert nvidia.nvcc_release("bash: nvcc: command not found") == ""


def test_cuda_takes_the_driver_tables_minimum_from_the_plan():
    with pytest.raises(nvidia.AnsibleFilterError, match="needs driver branch 580"):
        nvidia.cuda_plan(plan(entry("g5"), branch="570"), "13.0", "auto")
    assert nvidia.cuda_plan(plan(entry("g5"), branch="570"), "12.8", "auto")["action"] == "install"


# A Deep Learning AMI's driver (what the verify step reads from /proc/driver/nvidia/version) against the box's GPU
# and the CUDA its environments need. AWS's 2026 Base OSS images run 595.x, newer than gpubox's branch: that is fine.
@pytest.mark.parametrize(
    ("family", "version", "cuda", "problems"),
    [
        ("g6", "595.91.07", ["12"], []),
        ("p5", "595.91.07", ["12", "13"], []),
        ("p5", "580.159.04", ["13"], []),
        ("g5", "620.10", ["12"], []),
        ("p6-b200", "595.91.07", [], []),
        ("g4dn", "570.195.03", ["12"], []),
        # Too old for what the environments need.
        ("g4dn", "570.195.03", ["13.0"], ["CUDA 13 needs driver branch 580 or newer; the driver is 570.195.03"]),
        ("g5", "515.65.01", ["12.8"], ["CUDA 12 needs driver branch 525 or newer; the driver is 515.65.01"]),
        # Too old, or too new, for the GPU itself.
        ("p6-b200", "565.57.01", [], ["driver 565.57.01 is older than branch 570, the first for blackwell GPUs"]),
        ("p3", "595.91.07", ["12"], ["branch 580 is their last"]),
        ("p3dn", "580.126.09", ["12"], []),
        ("g5", "580.1", ["11"], []),
        ("g5", "580.1", ["10"], ["CUDA 10 is not in the driver role's CUDA table"]),
        ("p3", "580.126.09", ["12", "13"], ["CUDA 13 does not support volta GPUs"]),
    ],
)
def test_image_driver_is_accepted_when_it_serves_the_gpu_and_the_cuda(family, version, cuda, problems):
    found = nvidia.driver_problems(plan(entry(family)), version, cuda)
    assert len(found) == len(problems), found
    for text, expected in zip(found, problems):
        assert expected in text


def test_install_branch_is_checked_against_the_environments_cuda():
    assert nvidia.driver_problems(plan(entry("g5"), branch="570"), "570", ["13"]) == [
        "CUDA 13 needs driver branch 580 or newer; the driver is 570"]
    assert nvidia.driver_problems(plan(entry("g5")), "580", ["12", "13"]) == []
    assert nvidia.driver_problems(plan(entry("g5")), "", ["12"])[0].startswith(
        "no NVIDIA driver version")


# What the verify step prints on a Deep Learning AMI, from /proc/driver/nvidia/version as the real H100 host had it
# (tests/fixtures' copy of shared/fixtures/gpu-host-h100) and as a 2026 DLAMI's 595 driver would print it.
DLAMI_595 = H100_PROC_VERSION.replace("580.159.04", "595.91.07")
VOLTA_595 = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  595.91.07  Release Build\n"
FM_RUNNING = {"nvidia-fabricmanager.service": {"state": "running"}}


@pytest.mark.parametrize(
    ("family", "text", "services", "cuda", "warnings"),
    [
        ("g6", DLAMI_595, {}, ["12"], []),
        ("p5", DLAMI_595, FM_RUNNING, ["12"], []),
        ("p5", H100_PROC_VERSION, FM_RUNNING, ["13"], []),
        ("p5", DLAMI_595, {"nvidia-fabricmanager.service": {"state": "stopped"}}, ["12"],
         ["nvidia-fabricmanager is not active"]),
        ("g6", "", {}, ["12"], ["no NVIDIA kernel module is loaded"]),
        ("p5", "", {}, ["12"], ["no NVIDIA kernel module is loaded", "nvidia-fabricmanager is not active"]),
        ("p3", VOLTA_595, {}, ["12"], ["branch 580 is their last"]),
        ("p3", H100_PROC_VERSION.replace("580.159.04", "580.126.09"), {}, ["12"],
         ["flavor differs from the proprietary modules"]),
        ("g4dn", H100_PROC_VERSION.replace("580.159.04", "570.195.03"), {}, ["13"], ["CUDA 13 needs driver branch 580"]),
    ],
)
def test_verify_step_warns_only_when_the_image_driver_cannot_serve(family, text, services, cuda, warnings):
    found = nvidia.image_driver_findings(plan(entry(family)), text, services, cuda)
    assert len(found) == len(warnings), found
    for text_found, expected in zip(found, warnings):
        assert expected in text_found


# package_facts' versions after an install: apt's carry Debian revisions and maybe an epoch, rpm's neither.
@pytest.mark.parametrize(
    ("versions", "problem"),
    [
        (["580.95.05-0ubuntu1"], ""),
        (["1:580.95.05-1"], ""),
        (["580.126.09"], ""),
        (["595.91.07-0ubuntu1"], "nvidia-open is 595.91.07-0ubuntu1"),
        (["5800.1"], "nvidia-open is 5800.1"),
        ([], "nvidia-open is not installed"),
    ],
)
def test_off_branch(versions, problem):
    packages = {"nvidia-open": [{"version": v} for v in versions]} if versions else {}
    assert nvidia.off_branch("nvidia-open", packages, "580") == problem


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("[nvidia-driver]\nname=nvidia-driver\nstream=580-open\nprofiles=\nstate=enabled\n",
         {"stream": "580-open", "enabled": True}),
        ("[nvidia-driver]\nname=nvidia-driver\nstream=\nprofiles=\nstate=\n", {"stream": "", "enabled": False}),
        ("[nvidia-driver]\nstream = 575-dkms\nstate = enabled\n", {"stream": "575-dkms", "enabled": True}),
        ("", {"stream": "", "enabled": False}),
    ],
)
def test_dnf_module_state(text, state):
    assert nvidia.dnf_module_state(text) == state


def test_filters_are_registered():
    names = set(nvidia.FilterModule().filters())
    assert {"driver_plan", "gpu_from_pci", "nvidia_gpu_present", "nvidia_reboot_reason", "cuda_plan",
            "nvidia_driver_problems", "nvidia_image_driver_findings", "nvidia_off_branch", "dnf_module_state"} <= names
