"""The NVIDIA driver and GPUs of a host, read from nvidia-smi and /proc, and what a GPU check's answer depends on.

Shared by gpubox.box.nvidia_gpu_facts and gpubox.box.host_gather (the configure play's one read of the host)."""

import glob
import hashlib
import json
import os
import re
import stat
import xml.etree.ElementTree as ET

from ansible_collections.gpubox.box.plugins.module_utils.box_drift import unsafe_folder

PROC_VERSION_PATH = "/proc/driver/nvidia/version"
# gpubox.box.nvidia_gpu_facts's options (its action checks them too: it may answer without the module).
ARGUMENT_SPEC = {
    "nvidia_smi_xml": {"type": "path"},
    "proc_version_path": {"type": "path", "default": PROC_VERSION_PATH},
    "fingerprint_pythons": {"type": "list", "elements": "path", "default": []},
    "state_file": {"type": "path"},
}
MISMATCH_TEXT = "Driver/library version mismatch"
REBOOT_HINT = ("This is what a driver package upgrade (for example by unattended-upgrades) leaves while the old "
               "kernel module stays loaded; a reboot is the usual fix.")

# CUDA compute capability by product name: where one architecture spans several capabilities.
# Checked in order, before the architecture table.
COMPUTE_CAPABILITY_BY_NAME = (
    (r"\bG?B300\b", "10.3"),
    (r"\bG?B[12]00\b", "10.0"),
    (r"\bG?H(100|200|800|20)\b", "9.0"),
    (r"\bA(100|800|30)\b", "8.0"),
    (r"\bP100\b", "6.0"),
    (r"\bK80\b", "3.7"),
    (r"\bK520\b|\bGRID K", "3.0"),
    # Some drivers report GeForce RTX 50 cards as "Ada Lovelace".
    (r"\bRTX 50\d0\b|\bRTX PRO \d+ Blackwell\b", "12.0"),
)
# ... and by nvidia-smi's product_architecture, for everything else.
COMPUTE_CAPABILITY_BY_ARCHITECTURE = {
    "Maxwell": "5.2",
    "Pascal": "6.1",
    "Volta": "7.0",
    "Turing": "7.5",
    "Ampere": "8.6",
    "Ada Lovelace": "8.9",
    "Hopper": "9.0",
    "Blackwell": "12.0",
}

PROC_VERSION_RE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)")
NVML_LIBRARY_RE = re.compile(r"NVML library version:\s*(\d+(?:\.\d+)+)")
LIBRARY_FILE_RE = re.compile(r"libnvidia-ml\.so\.(\d+\.\d+(?:\.\d+)*)$")
LIBRARY_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.*",
    "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.*",
    "/usr/lib64/libnvidia-ml.so.*",
    "/usr/lib/libnvidia-ml.so.*",
)
NUMBER_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*[A-Za-z%]*\s*$")


class SmiXmlError(ValueError):
    """nvidia-smi's XML could not be understood."""


def _text(element, path):
    value = element.findtext(path)
    if value is None:
        return None
    value = value.strip()
    return None if value in ("", "N/A", "[N/A]") else value


def _number(element, path, kind=int):
    """'81559 MiB' -> 81559, '700.00 W' -> 700.0; None for N/A or anything else."""
    value = element.findtext(path)
    match = NUMBER_RE.match(value) if value else None
    if not match:
        return None
    return kind(float(match.group(1)))


def _first_number(element, paths, kind=float):
    for path in paths:
        value = _number(element, path, kind)
        if value is not None:
            return value
    return None


def _enabled(element, path):
    """'Enabled' -> True, 'Disabled' -> False, N/A or missing -> None."""
    value = _text(element, path)
    return {"enabled": True, "disabled": False}.get((value or "").lower())


def compute_capability(name, architecture):
    """(capability, source) from the product name, then the architecture; (None, None) if unknown."""
    for pattern, capability in COMPUTE_CAPABILITY_BY_NAME:
        if name and re.search(pattern, name):
            return capability, "table"
    capability = COMPUTE_CAPABILITY_BY_ARCHITECTURE.get(architecture or "")
    return (capability, "table") if capability else (None, None)


def _parse_gpu(index, gpu):
    name = _text(gpu, "product_name")
    architecture = _text(gpu, "product_architecture")
    capability = _text(gpu, "compute_cap")  # not in DTD v13; read it should a driver add it
    source = "nvidia-smi" if capability else None
    if not capability:
        capability, source = compute_capability(name, architecture)
    return {
        "index": index,
        "minor_number": _number(gpu, "minor_number"),
        "name": name,
        "architecture": architecture,
        "uuid": _text(gpu, "uuid"),
        "pci_bus_id": _text(gpu, "pci/pci_bus_id") or gpu.get("id"),
        "memory_total_mib": _number(gpu, "fb_memory_usage/total"),
        "memory_used_mib": _number(gpu, "fb_memory_usage/used"),
        "compute_capability": capability,
        "compute_capability_source": source,
        "persistence_mode": _enabled(gpu, "persistence_mode"),
        "ecc_mode": {
            "current": _enabled(gpu, "ecc_mode/current_ecc"),
            "pending": _enabled(gpu, "ecc_mode/pending_ecc"),
        },
        "mig_mode": {
            "current": _enabled(gpu, "mig_mode/current_mig"),
            "pending": _enabled(gpu, "mig_mode/pending_mig"),
        },
        "mig_device_count": len(gpu.findall("mig_devices/mig_device")),
        "clocks": {
            "graphics_mhz": _number(gpu, "clocks/graphics_clock"),
            "sm_mhz": _number(gpu, "clocks/sm_clock"),
            "memory_mhz": _number(gpu, "clocks/mem_clock"),
        },
        # gpu_power_readings since driver 535; power_readings before.
        "power_limit_w": _first_number(gpu, ("gpu_power_readings/current_power_limit",
                                             "power_readings/enforced_power_limit",
                                             "power_readings/power_limit")),
        "power_draw_w": _first_number(gpu, ("gpu_power_readings/average_power_draw",
                                            "gpu_power_readings/instant_power_draw",
                                            "power_readings/power_draw")),
        "utilization": {
            "gpu_percent": _number(gpu, "utilization/gpu_util"),
            "memory_percent": _number(gpu, "utilization/memory_util"),
        },
    }


def split_preamble(text):
    """nvidia-smi may print warnings (a corrupt infoROM) before the XML: (warnings, xml)."""
    starts = [i for i in (text.find("<?xml"), text.find("<nvidia_smi_log")) if i >= 0]
    start = min(starts) if starts else 0
    return text[:start].strip(), text[start:]


def parse_smi_xml(text):
    """Parse `nvidia-smi -q -x` output. Raises SmiXmlError when it is not what nvidia-smi prints."""
    if not text or not text.strip():
        raise SmiXmlError("the XML is empty")
    xml_text = split_preamble(text)[1]
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise SmiXmlError(f"the XML is not well-formed: {e}") from None
    if root.tag != "nvidia_smi_log":
        raise SmiXmlError(f"the root element is <{root.tag}>, not <nvidia_smi_log>")
    return {
        "driver_version": _text(root, "driver_version"),
        "cuda_version": _text(root, "cuda_version"),
        "gpus": [_parse_gpu(i, gpu) for i, gpu in enumerate(root.findall("gpu"))],
    }


def parse_proc_version(text):
    """Version and flavor of the loaded kernel module from /proc/driver/nvidia/version."""
    line = next((ln for ln in text.splitlines() if ln.startswith("NVRM version:")), "")
    match = PROC_VERSION_RE.search(line)
    return {
        "version": match.group(1) if match else None,
        "flavor": ("open" if "Open Kernel Module" in line else "proprietary") if line else None,
    }


def library_version_from_output(output):
    """The 'NVML library version: 580.178' line nvidia-smi prints after a mismatch, or None."""
    match = NVML_LIBRARY_RE.search(output or "")
    return match.group(1) if match else None


def _version_key(version):
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def library_version_from_files(paths):
    """Highest version among libnvidia-ml.so.X.Y[.Z] file names, or None."""
    versions = [m.group(1) for m in (LIBRARY_FILE_RE.search(os.path.basename(p)) for p in paths) if m]
    return max(versions, key=_version_key) if versions else None


def _same_version(a, b):
    """Equal on the parts both have: NVML's '580.178' matches the module's '580.178.04'."""
    parts_a, parts_b = a.split("."), b.split(".")
    common = min(len(parts_a), len(parts_b))
    return parts_a[:common] == parts_b[:common]


def detect_mismatch(kernel_version, library_version, smi_output=None):
    """(mismatch, message): the kernel module and the user-space library disagree."""
    said = MISMATCH_TEXT.lower() in (smi_output or "").lower()
    differ = bool(kernel_version and library_version and not _same_version(kernel_version, library_version))
    if not (said or differ):
        return False, ""
    message = (f"The loaded NVIDIA kernel module is {kernel_version or 'of unknown version'} but the "
               f"user-space driver library (NVML) is {library_version or 'of unknown version'}")
    if said:
        message += f" (nvidia-smi: Failed to initialize NVML: {MISMATCH_TEXT})"
    return True, f"{message}. {REBOOT_HINT}"


def _first_line(text):
    return next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "no output")


def build_facts(smi=None, smi_error=None, proc=None, nvidia_smi_path=None, library_version=None,
                proc_version_path="/proc/driver/nvidia/version"):
    """The nvidia_gpu fact from what could be read.

    smi: parse_smi_xml()'s result, or None; smi_error: nvidia-smi's output when it exited non-zero;
    proc: parse_proc_version()'s result, or None when the file is absent; library_version: from the
    libnvidia-ml file name, used only when nvidia-smi does not say.
    """
    kernel_version = proc["version"] if proc else None
    if smi:
        library_version = smi["driver_version"]
    elif smi_error:
        library_version = library_version_from_output(smi_error) or library_version
    mismatch, mismatch_message = detect_mismatch(kernel_version, library_version, smi_error)
    gpus = smi["gpus"] if smi else []
    present = bool(smi or proc or mismatch)

    if not present:
        if smi_error:
            reason = (f"No NVIDIA kernel module is loaded ({proc_version_path} is absent); "
                      f"nvidia-smi: {_first_line(smi_error)}")
        elif nvidia_smi_path:
            reason = f"No NVIDIA kernel module is loaded ({proc_version_path} is absent)"
        else:
            reason = f"No NVIDIA driver: nvidia-smi is not installed and {proc_version_path} is absent"
    elif mismatch:
        reason = mismatch_message
    elif smi_error:
        reason = f"nvidia-smi failed: {_first_line(smi_error)}"
    elif not smi:
        reason = "nvidia-smi is not installed; no GPU details"
    else:
        reason = ""

    return {
        "present": present,
        "reason": reason,
        "nvidia_smi_path": nvidia_smi_path,
        "driver_version": (smi["driver_version"] if smi else None) or kernel_version,
        "cuda_version": smi["cuda_version"] if smi else None,
        "kernel_module_version": kernel_version,
        "kernel_module_flavor": proc["flavor"] if proc else None,
        "library_version": library_version,
        "mismatch": mismatch,
        "mismatch_message": mismatch_message,
        "gpu_count": len(gpus),
        "gpus": gpus,
    }


# What a probe's answer depends on in an environment (fingerprint), and the variables it reads.
FINGERPRINT_GLOBS = (".gpubox-*", "conda-meta/*.json", "lib/python*/site-packages/*.dist-info",
                     "lib/python*/site-packages/*.egg-info", "lib/python*/site-packages/*.pth")
FINGERPRINT_VARIABLES = ("KERAS_BACKEND", "KERAS_HOME", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "LD_LIBRARY_PATH")


def fingerprint(pythons, boot_id_path="/proc/sys/kernel/random/boot_id"):
    """sha256 of the boot, the variables and each environment's interpreter and installed packages."""
    digest = hashlib.sha256()
    try:
        digest.update(_read(boot_id_path).encode())
    except OSError:
        digest.update(b"no boot id\n")
    digest.update((" ".join(os.environ.get(name, "") for name in FINGERPRINT_VARIABLES) + "\n").encode())
    for python in pythons:
        prefix = os.path.dirname(os.path.dirname(python))
        digest.update(os.fsencode(python) + b" " + os.fsencode(os.path.realpath(python)) + b"\n")
        for pattern in FINGERPRINT_GLOBS:
            for path in sorted(glob.glob(os.path.join(glob.escape(prefix), pattern))):
                digest.update(os.fsencode(path) + b"\n")  # any name, UTF-8 or not
    return digest.hexdigest()


def last_check(path):
    """The last passed check, only when root's own (0600), a plain file (not a link, checked on the file opened) of
    JSON, in a folder only root may change; else None."""
    if unsafe_folder(os.path.dirname(path)):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or stat.S_IMODE(st.st_mode) != 0o600:
            return None
        try:
            found = json.load(handle)
        except ValueError:
            return None
    return found if isinstance(found, dict) else None


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def read_gpu(module, nvidia_smi_xml=None, proc_version_path=PROC_VERSION_PATH, run=None):
    """The nvidia_gpu fact and the warnings to give with it. Raises SmiXmlError when nvidia-smi's output (or the
    saved file) cannot be read. run(argv) -> (rc, out, err) runs nvidia-smi (default: the module's run_command)."""
    warnings = []
    proc = parse_proc_version(_read(proc_version_path)) if os.path.exists(proc_version_path) else None

    smi_path = smi_text = smi_error = None
    if nvidia_smi_xml:
        if not os.path.isfile(nvidia_smi_xml):
            raise SmiXmlError(f"nvidia_smi_xml: {nvidia_smi_xml} does not exist or is not a file")
        smi_text, source = _read(nvidia_smi_xml), nvidia_smi_xml
    else:
        smi_path = module.get_bin_path("nvidia-smi", opt_dirs=["/usr/local/nvidia/bin"])
        source = "nvidia-smi -q -x"
        if smi_path:
            rc, out, err = (run or module.run_command)([smi_path, "-q", "-x"])
            if rc == 0:
                smi_text = out
            else:
                smi_error = "\n".join(s for s in (out.strip(), err.strip()) if s) or f"exit status {rc}"

    smi = None
    if smi_text is not None:
        preamble = split_preamble(smi_text)[0]
        if preamble:
            warnings.append(f"{source} printed before its XML: {preamble}")
        try:
            smi = parse_smi_xml(smi_text)
        except SmiXmlError as e:
            raise SmiXmlError(f"Could not read the output of {source}: {e}") from e

    library_version = None
    if smi is None:
        library_version = library_version_from_files([p for g in LIBRARY_GLOBS for p in glob.glob(g)])

    facts = build_facts(smi=smi, smi_error=smi_error, proc=proc, nvidia_smi_path=smi_path,
                        library_version=library_version, proc_version_path=proc_version_path)
    if facts["mismatch"]:
        warnings.append(facts["mismatch_message"])
    return facts, warnings
