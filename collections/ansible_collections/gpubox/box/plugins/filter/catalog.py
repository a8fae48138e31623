"""Look-ups in gpubox's instance catalog (catalog/instance_types.yml).

The catalog is passed in as data (the playbooks load it with vars_files), so the
functions here are pure and unit-tested directly.
"""

import difflib
import ipaddress
import math
import re
from datetime import datetime, timezone

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")


def _split(type_name):
    family, _, size = str(type_name).strip().partition(".")
    return family, size


def _all_types(families):
    for family, data in families.items():
        for size in data["sizes"]:
            yield f"{family}.{size}"


def instance_type(type_name, families, quota_groups):
    """The catalog entry for type_name, flattened; {} when the catalog does not know it."""
    family, size = _split(type_name)
    data = families.get(family)
    if not data or size not in data["sizes"]:
        return {}
    per_size = data["sizes"][size]
    quota = quota_groups[data["quota_group"]]
    entry = {k: v for k, v in data.items() if k != "sizes"}
    entry.update(per_size)
    entry.update(
        type=f"{family}.{size}",
        family=family,
        size=size,
        gpu_memory_gib_total=data["gpu_memory_gib"] * per_size["gpus"],
        fp32_tflops=round(data["gpu_fp32_tflops"] * per_size["gpus"], 1),
        **quota,
    )
    return entry


def nearest_instance_types(type_name, families, count=3):
    """Catalog type names that look most like type_name (for typos)."""
    names = sorted(_all_types(families))
    typed = str(type_name).strip().lower()
    found = difflib.get_close_matches(typed, names, n=count, cutoff=0.5)
    if not found:
        family, _ = _split(typed)
        found = [n for n in names if n.startswith(family + ".")][:count]
    return found


def current_alternatives(type_name, families, quota_groups, count=3):
    """Current NVIDIA types closest to type_name in GPU count, memory and FP32 throughput.

    One size per family (the one with the same GPU count and fewest vCPUs), best first.
    """
    wanted = instance_type(type_name, families, quota_groups)
    gpus = wanted.get("gpus", 1)
    memory = wanted.get("gpu_memory_gib_total", 16)
    tflops = wanted.get("fp32_tflops", 10.0)
    choices = []
    for family, data in families.items():
        if data["status"] != "current" or data["gpu_vendor"] != "nvidia":
            continue
        sizes = sorted(data["sizes"].items(), key=lambda s: (abs(s[1]["gpus"] - gpus), s[1]["vcpus"]))
        entry = instance_type(f"{family}.{sizes[0][0]}", families, quota_groups)
        distance = (
            abs(entry["gpus"] - gpus) * 10
            + abs(math.log(entry["gpu_memory_gib_total"] / memory))
            + abs(math.log(entry["fp32_tflops"] / tflops))
        )
        choices.append((distance, entry["usd_per_hour"], entry))
    choices.sort(key=lambda c: (c[0], c[1]))
    return [c[2] for c in choices[:count]]


def ssh_cidr_problem(cidr, allow_world=False):
    """'' when cidr is a usable SSH source range, else what is wrong and how to fix it."""
    try:
        network = ipaddress.ip_network(str(cidr).strip(), strict=False)
    except ValueError:
        return (
            f"ssh_cidr '{cidr}' is not an IP range. Pass your own address as a /32, "
            "for example -e ssh_cidr=203.0.113.7/32, or leave ssh_cidr unset to detect it."
        )
    if network.prefixlen == 0 and not allow_world:
        return (
            f"ssh_cidr '{cidr}' opens SSH to the whole internet. Use your own address "
            "(-e ssh_cidr=YOUR.IP/32, or leave it unset to detect it), or pass "
            "-e allow_world_ssh=true if you really mean it."
        )
    return ""


def normalise_cidr(cidr):
    """The network address form of a CIDR ('203.0.113.7/24' -> '203.0.113.0/24')."""
    return str(ipaddress.ip_network(str(cidr).strip(), strict=False))


def host_cidr(address):
    """A single address as a CIDR: '203.0.113.7' -> '203.0.113.7/32' (IPv6: /128)."""
    ip = ipaddress.ip_address(str(address).strip())
    return f"{ip}/{ip.max_prefixlen}"


def _utc(stamp):
    moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _uptime(launch_time, now):
    seconds = int((_utc(now) - _utc(launch_time)).total_seconds())
    days, rest = divmod(max(seconds, 0), 86400)
    hours, minutes = divmod(rest // 60, 60)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m"


def status_table(instances, families, quota_groups, now):
    """Lines of a table of gpubox instances: name, type, GPUs, state, public IP, uptime, estimated $/h."""
    header = ("NAME", "TYPE", "GPUS", "STATE", "PUBLIC IP", "UPTIME", "EST. $/H")
    rows = []
    for inst in sorted(instances, key=lambda i: i.get("tags", {}).get("gpubox:name", "")):
        entry = instance_type(inst["instance_type"], families, quota_groups)
        state = inst["state"]["name"]
        running = state in ("pending", "running")
        rows.append((
            inst.get("tags", {}).get("gpubox:name", "?"),
            inst["instance_type"],
            f"{entry['gpus']}x {entry['gpu_model'].replace('NVIDIA ', '')}" if entry else "-",
            state,
            inst.get("public_ip_address") or "-",
            _uptime(inst["launch_time"], now) if running else "-",
            (f"{entry['usd_per_hour']:.2f}" if entry else "?") if running else "0 (disks only)",
        ))
    if not rows:
        return ["No gpubox boxes in this region."]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]


AWS_ERROR_CODE = re.compile(r"An error occurred \(([A-Za-z0-9.]+)\)|\b(InsufficientInstanceCapacity|VcpuLimitExceeded|Unsupported)\b")


def aws_error_code(message):
    """The AWS error code in a module's failure message ('' when there is none)."""
    match = AWS_ERROR_CODE.search(str(message or ""))
    return (match.group(1) or match.group(2)) if match else ""


def box_name_problem(name):
    """'' when name can name a box, else what is wrong and how to fix it."""
    if isinstance(name, str) and NAME_PATTERN.match(name):
        return ""
    return (
        f"name '{name}' is not a valid box name: use 1 to 32 lower-case letters, digits "
        "and dashes, starting with a letter and not ending with a dash, for example -e name=thesis-gpu."
    )


class FilterModule:
    def filters(self):
        return {
            "instance_type": instance_type,
            "nearest_instance_types": nearest_instance_types,
            "current_alternatives": current_alternatives,
            "ssh_cidr_problem": ssh_cidr_problem,
            "normalise_cidr": normalise_cidr,
            "host_cidr": host_cidr,
            "status_table": status_table,
            "aws_error_code": aws_error_code,
            "box_name_problem": box_name_problem,
        }
