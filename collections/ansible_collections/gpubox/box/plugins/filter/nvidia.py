"""Decisions for the NVIDIA driver and CUDA roles: which packages, from where, and when to reboot.

The tables are data in roles/nvidia_driver/vars/main.yml (platforms, architectures, PCI ids);
the catalog entry comes from gpubox.box.instance_type. The functions here are pure: the roles
pass the tables in, and tests/unit/test_driver_plan.py loads the same files directly.

A decision that cannot be met raises AnsibleFilterError with a message that says what to do.
"""

import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - unit tests always have ansible-core
    class AnsibleFilterError(Exception):
        pass

NVIDIA_VENDOR = "0x10de"
VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)$")
# The oldest toolkit the cuda role installs; older CUDA (an environment's wheels) still counts in the driver check.
MIN_TOOLKIT_MAJOR = 12
DRIVER_VERSION_PATTERN = re.compile(r"\b(\d{3,})\.(\d+)(?:\.(\d+))?\b")


def os_key(os_id, os_version):
    """The platform table's key for an OS: ubuntu-24.04, amazon-2023, debian-12."""
    name = str(os_id).strip().lower().replace(" ", "")
    name = {"amazonlinux": "amazon", "amzn": "amazon", "al": "amazon"}.get(name, name)
    version = str(os_version).strip()
    if name in ("amazon", "debian"):
        version = version.split(".", maxsplit=1)[0]
    return f"{name}-{version}"


def _fill(value, **fields):
    """Format {branch}, {kernel}, ... placeholders in a string or a list of strings."""
    if isinstance(value, dict):
        return {k: _fill(v, **fields) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, **fields) for v in value]
    if isinstance(value, str):
        return value.format(**fields)
    return value


def driver_plan(family_entry, os_id, os_version, platforms, architectures, branch="580", kernel="", machine="x86_64",
                cuda_min_branch=None):
    """What the nvidia_driver role does on one instance family and OS.

    family_entry: a catalog entry (gpubox.box.instance_type) or gpu_from_pci's answer.
    cuda_min_branch: {CUDA major: oldest driver branch}, carried in the plan for the cuda role and driver_problems.
    Returns a dict; raises AnsibleFilterError for combinations gpubox does not support.
    """
    entry = dict(family_entry or {})
    family = entry.get("family") or "this instance"
    if not entry:
        raise AnsibleFilterError(
            "nvidia_driver: the instance type is unknown and the GPU's PCI id is not in the table. "
            "Set nvidia_driver_instance_type to the EC2 type, for example -e nvidia_driver_instance_type=g5.xlarge."
        )
    if entry.get("gpu_vendor", "nvidia") != "nvidia" or entry.get("module_flavor") == "none":
        raise AnsibleFilterError(
            f"nvidia_driver: {family} has a {entry.get('gpu_model', 'non-NVIDIA GPU')} ({entry.get('gpu_vendor')}); "
            "gpubox sets up NVIDIA GPUs only. Pick an NVIDIA type such as g6.xlarge or g5.xlarge, "
            "or run with -e gpu_required=false to configure it as a CPU box."
        )
    arch_name = entry.get("architecture", "")
    arch = architectures.get(arch_name)
    if arch is None:
        raise AnsibleFilterError(
            f"nvidia_driver: GPU architecture '{arch_name}' of {family} is not in the architecture table "
            "(roles/nvidia_driver/vars/main.yml)."
        )
    if not arch["supported"]:
        raise AnsibleFilterError(f"nvidia_driver: {family} ({entry.get('gpu_model', arch_name)}): {arch['reason']}")
    branch = str(branch)
    if not branch.isdigit():
        raise AnsibleFilterError(f"nvidia_driver: nvidia_driver_branch '{branch}' is not a driver branch such as 580.")
    if int(branch) < arch["min_branch"]:
        raise AnsibleFilterError(
            f"nvidia_driver: {arch_name} GPUs ({family}) need driver branch {arch['min_branch']} or newer, "
            f"not {branch}. Set nvidia_driver_branch to {arch['min_branch']} or later."
        )
    if arch.get("max_branch") and int(branch) > arch["max_branch"]:
        raise AnsibleFilterError(
            f"nvidia_driver: branch {arch['max_branch']} is the last driver branch for {arch_name} GPUs ({family}); "
            f"branch {branch} does not drive them. Set nvidia_driver_branch to {arch['max_branch']}."
        )
    key = os_key(os_id, os_version)
    platform = platforms.get(key)
    if platform is None:
        raise AnsibleFilterError(
            f"nvidia_driver: {os_id} {os_version} is not supported. gpubox installs the NVIDIA driver on "
            f"{', '.join(sorted(platforms))}."
        )
    flavor = entry.get("module_flavor") or arch["module_flavor"]
    if flavor != arch["module_flavor"]:
        raise AnsibleFilterError(
            f"nvidia_driver: the catalog says {family} uses {flavor} kernel modules, but {arch_name} GPUs need "
            f"{arch['module_flavor']} ones. Fix catalog/instance_types.yml."
        )
    repo_arch = platform["repo_arch"].get(str(machine))
    if repo_arch is None:
        raise AnsibleFilterError(
            f"nvidia_driver: NVIDIA's repository for {key} has no {machine} packages "
            f"(only {', '.join(sorted(platform['repo_arch']))})."
        )
    kernel_release = re.sub(r"\.(x86_64|aarch64)$", "", str(kernel))
    fields = {"branch": branch, "kernel": kernel, "kernel_release": kernel_release, "flavor": flavor,
              "repo_arch": repo_arch}
    lock = dict(platform["branch_lock"])
    if isinstance(lock.get("stream"), dict):
        lock["stream"] = lock["stream"][flavor]
    nvswitch = bool(entry.get("nvswitch"))
    fabric_packages = _fill(platform["fabric_manager_packages"][flavor], **fields) if nvswitch else []
    fabric_packages += arch.get("fabric_manager_extra", []) if nvswitch else []
    return {
        "family": entry.get("family", ""),
        "gpu_model": entry.get("gpu_model", ""),
        "architecture": arch_name,
        "os": key,
        "package_manager": platform["package_manager"],
        "branch": branch,
        "module_flavor": flavor,
        "repo": _fill(platform["repo"], **fields),
        "prerequisite_packages": _fill(platform["prerequisite_packages"], **fields),
        "branch_lock": _fill(lock, **fields),
        "driver_packages": _fill(platform["driver_packages"][flavor], **fields),
        "driver_check_packages": _fill(platform["driver_check_packages"][flavor], **fields),
        "legacy_packages": _fill(platform["legacy_packages"][flavor]
                                 + (platform["legacy_packages"]["fabric_manager"] if nvswitch else []), **fields),
        # Versioned with the driver: each must be of the branch after an install.
        "branch_packages": _fill(platform["driver_packages"][flavor][:1]
                                 + (platform["fabric_manager_packages"][flavor] if nvswitch else []), **fields),
        "fabric_manager": nvswitch,
        "fabric_manager_packages": fabric_packages,
        "fabric_manager_service": platform["fabric_manager_service"] if nvswitch else "",
        "hold_method": platform["hold_method"],
        "hold_pattern": _fill(platform["hold_pattern"], **fields),
        "initramfs_command": platform["initramfs_command"],
        "reboot_rule": "driver-changed-or-version-mismatch",
        "reboot_timeout": arch["reboot_timeout_nvswitch" if nvswitch else "reboot_timeout"],
        "max_cuda_major": arch["max_cuda_major"],
        "min_branch": arch["min_branch"],
        "max_branch": arch.get("max_branch") or 0,
        "compute_capability": str(entry.get("compute_capability", "")),
        "cuda_min_branch": {str(k): int(v) for k, v in (cuda_min_branch or {}).items()},
        "cuda_package": platform["cuda_package"],
    }


def gpu_from_pci(pci_lines, pci_table):
    """A catalog-like entry from `vendor device class` lines of /sys/bus/pci/devices/*.

    Used when the instance type is unknown. {} when no NVIDIA GPU is in the PCI table.
    """
    gpus, switches = pci_summary(pci_lines)
    for device in gpus:
        known = pci_table.get(device)
        if known:
            entry = dict(known)
            entry.setdefault("gpu_vendor", "nvidia")
            entry.update(family=f"PCI device {device}", nvswitch=switches > 0, gpus=len(gpus))
            return entry
    return {}


def pci_summary(pci_lines):
    """(NVIDIA GPU device ids, NVIDIA bridge count) from `vendor device class` lines.

    A GPU is PCI class 0x03xxxx (display controller); NVSwitches show as NVIDIA bridges (0x0680xx).
    """
    if isinstance(pci_lines, str):
        pci_lines = pci_lines.splitlines()
    gpus, switches = [], 0
    for line in pci_lines:
        parts = str(line).split()
        if len(parts) < 3 or parts[0].lower() != NVIDIA_VENDOR:
            continue
        device, klass = parts[1].lower(), parts[2].lower()
        if klass.startswith("0x03"):
            gpus.append(device)
        elif klass.startswith("0x0680"):
            switches += 1
    return gpus, switches


def nvidia_gpu_present(pci_lines):
    """True when the PCI lines hold at least one NVIDIA display controller."""
    return bool(pci_summary(pci_lines)[0])


def driver_version(text):
    """The driver version in nvidia-smi output or /proc/driver/nvidia/version ('' if none)."""
    match = DRIVER_VERSION_PATTERN.search(str(text or ""))
    return match.group(0) if match else ""


def _as_int(text):
    return (0, int(text)) if str(text).isdigit() else (1, str(text))


def driver_problems(plan, version, cuda_versions=()):
    """What keeps a driver from serving this box: [] when it drives the GPU and runs every CUDA it needs.

    plan: driver_plan's answer. version: the driver (595.91.07, or a branch such as 580).
    cuda_versions: the CUDA versions (MAJOR or MAJOR.MINOR) the box needs, for example its environments' wheels.
    A Deep Learning AMI's newer driver is fine by this test; only a driver that cannot serve is a problem.
    """
    found = re.match(r"^(\d+)", str(version or "").strip())
    if not found:
        return [f"no NVIDIA driver version could be read ({version!r})"]
    branch = int(found.group(1))
    problems = []
    gpu = f"{plan['architecture']} GPUs ({plan['gpu_model'] or plan['family']})"
    if branch < plan["min_branch"]:
        problems.append(f"driver {version} is older than branch {plan['min_branch']}, the first for {gpu}")
    if plan["max_branch"] and branch > plan["max_branch"]:
        problems.append(
            f"driver {version} does not drive {gpu}: branch {plan['max_branch']} is their last; "
            f"use an image with branch {plan['max_branch']} (ami=ubuntu installs it)"
        )
    for cuda in sorted({str(v).split(".", maxsplit=1)[0] for v in cuda_versions or () if str(v).strip()}, key=_as_int):
        if cuda.isdigit() and int(cuda) > plan["max_cuda_major"]:
            problems.append(f"CUDA {cuda} does not support {gpu}; their last CUDA is {plan['max_cuda_major']}.x")
            continue
        needed = plan["cuda_min_branch"].get(cuda)
        if needed is None:
            problems.append(f"CUDA {cuda} is not in the driver role's CUDA table; gpubox knows CUDA "
                            f"{', '.join(sorted(plan['cuda_min_branch']))}")
        elif branch < needed:
            problems.append(f"CUDA {cuda} needs driver branch {needed} or newer; the driver is {version}")
    return problems


def image_driver_findings(plan, module_text, services=None, cuda_versions=()):
    """What the verify step warns about on an image that brought its driver (a Deep Learning AMI): [] when none.

    module_text: /proc/driver/nvidia/version ('' when no module is loaded). services: service_facts' services.
    """
    found = driver_version(module_text)
    if not found:
        findings = ["no NVIDIA kernel module is loaded (/proc/driver/nvidia/version is missing)"]
    else:
        findings = driver_problems(plan, found, cuda_versions)
    if found and ("Open Kernel Module" in module_text) != (plan["module_flavor"] == "open"):
        findings.append(f"the image's kernel module flavor differs from the {plan['module_flavor']} modules this GPU wants")
    service = (services or {}).get(f"{plan['fabric_manager_service']}.service", {})
    if plan["fabric_manager"] and service.get("state") != "running":
        findings.append(f"{plan['fabric_manager_service']} is not active; NVSwitch GPUs stay unusable without it")
    return findings


def off_branch(name, packages, branch):
    """'' when package `name` is installed at a version of driver branch `branch`; else what is wrong.

    packages: package_facts' ansible_facts.packages (apt versions may carry an epoch, 1:580.95.05-0ubuntu1).
    """
    versions = [str(p.get("version", "")) for p in (packages or {}).get(name, [])]
    if not versions:
        return f"{name} is not installed"
    wrong = [v for v in versions if not re.match(rf"^(\d+:)?{re.escape(str(branch))}\.", v)]
    return f"{name} is {', '.join(wrong)}" if wrong else ""


def dnf_module_state(text):
    """{stream, enabled} from a dnf module state file (/etc/dnf/modules.d/nvidia-driver.module); '' / False if none."""
    values = {}
    for line in str(text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return {"stream": values.get("stream", ""), "enabled": values.get("state", "").lower() == "enabled"}


def reboot_reason(driver_changed, loaded_version, installed_version):
    """Why the host must reboot after the driver step; '' when it need not.

    driver_changed: packages were installed or changed in this run.
    loaded_version: /sys/module/nvidia/version ('' when no module is loaded).
    installed_version: the on-disk kernel module's version (modinfo), '' when none.
    """
    if driver_changed:
        return "the NVIDIA driver packages were installed or changed"
    loaded, installed = str(loaded_version or "").strip(), str(installed_version or "").strip()
    if installed and not loaded:
        return f"driver {installed} is installed but its kernel module is not loaded"
    if installed and loaded != installed:
        return f"the loaded kernel module is {loaded} but the installed driver is {installed} (Driver/library version mismatch)"
    return ""


def cuda_plan(plan, cuda_version, mode, preinstalled=False, link_target=""):
    """What the cuda role does: install, verify or skip, and which toolkit.

    plan: driver_plan's answer (gpubox_nvidia_plan). mode: cuda_toolkit (auto or skip).
    preinstalled: the image came with a driver (a Deep Learning AMI): verify, never install.
    link_target: where /usr/local/cuda points ('' when absent).
    The oldest driver branch for each CUDA major is the plan's cuda_min_branch (the driver role's table).
    """
    if mode == "skip":
        return {"action": "skip", "version": "", "package": "", "home": "",
                "reason": "cuda_toolkit is skip (for example TensorFlow brings its own CUDA libraries)"}
    if mode != "auto":
        raise AnsibleFilterError(f"cuda: cuda_toolkit '{mode}' is not one of auto, skip.")
    if preinstalled:
        found = re.search(r"cuda-(\d+\.\d+)/?$", str(link_target or ""))
        if not found:
            raise AnsibleFilterError(
                "cuda: this image came with an NVIDIA driver (a Deep Learning AMI) but /usr/local/cuda does not "
                "point to a /usr/local/cuda-X.Y toolkit. Install one, or set -e cuda_toolkit=skip."
            )
        version = found.group(1)
        return {"action": "verify", "version": version, "package": "", "home": f"/usr/local/cuda-{version}",
                "reason": f"the image ships CUDA {version} (/usr/local/cuda -> {link_target})"}
    match = VERSION_PATTERN.match(str(cuda_version).strip())
    if not match:
        raise AnsibleFilterError(f"cuda: cuda_version '{cuda_version}' is not MAJOR.MINOR, for example 12.8.")
    major, minor = int(match.group(1)), int(match.group(2))
    if major < MIN_TOOLKIT_MAJOR:
        raise AnsibleFilterError(
            f"cuda: gpubox installs CUDA {MIN_TOOLKIT_MAJOR}.x or newer toolkits (NVIDIA's repositories for these "
            f"systems have no {major}.x); set -e cuda_version=12.8, or cuda_toolkit=skip if the frameworks bring theirs."
        )
    if major > plan["max_cuda_major"]:
        raise AnsibleFilterError(
            f"cuda: CUDA {major} does not support {plan['architecture']} GPUs ({plan['family']}); the last CUDA "
            f"for them is {plan['max_cuda_major']}.x. Set -e cuda_version={plan['max_cuda_major']}.8."
        )
    table = plan["cuda_min_branch"]
    needed = table.get(str(major))
    if needed is None:
        raise AnsibleFilterError(
            f"cuda: CUDA {major}.x is not in the driver role's CUDA table; use {' or '.join(sorted(table))}.x."
        )
    if int(plan["branch"]) < int(needed):
        raise AnsibleFilterError(
            f"cuda: CUDA {major}.{minor} needs driver branch {needed} or newer; the driver is branch {plan['branch']}."
        )
    return {"action": "install", "version": f"{major}.{minor}",
            "package": plan["cuda_package"].format(major=major, minor=minor),
            "home": f"/usr/local/cuda-{major}.{minor}",
            "reason": f"install CUDA {major}.{minor} from NVIDIA's repository"}


def nvcc_release(text):
    """The MAJOR.MINOR release in `nvcc --version` output ('' if none)."""
    found = re.search(r"release (\d+\.\d+)", str(text or ""))
    return found.group(1) if found else ""


class FilterModule:
    def filters(self):
        return {
            "driver_plan": driver_plan,
            "gpu_from_pci": gpu_from_pci,
            "nvidia_gpu_present": nvidia_gpu_present,
            "nvidia_driver_version": driver_version,
            "nvidia_reboot_reason": reboot_reason,
            "nvidia_driver_problems": driver_problems,
            "nvidia_image_driver_findings": image_driver_findings,
            "nvidia_off_branch": off_branch,
            "dnf_module_state": dnf_module_state,
            "cuda_plan": cuda_plan,
            "nvcc_release": nvcc_release,
        }
