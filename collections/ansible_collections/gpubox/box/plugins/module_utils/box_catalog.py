"""Look-ups in gpubox's instance catalog (catalog/instance_types.yml), passed in as data.

Pure functions: the catalog filters, the planner and the unit tests use them directly.
"""

import difflib
import math

# The type of a new box when none is asked for.
DEFAULT_TYPE = "g5.xlarge"


def _split(type_name):
    family, size = str(type_name).strip().partition(".")[::2]
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
        family = _split(typed)[0]
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


def gpus_label(entry):
    """'1x NVIDIA A10G' for a catalog entry; '' for a type outside the catalog."""
    return f"{entry['gpus']}x {entry['gpu_model']}" if entry else ""


def type_list(types):
    """The types asked for, in the user's order: 'g6e.xlarge, g6.xlarge' -> ['g6e.xlarge', 'g6.xlarge']."""
    found = []
    for name in str(types or "").split(","):
        if name.strip() and name.strip() not in found:
            found.append(name.strip())
    return found


def offering_candidates(types, families, quota_groups):
    """The types whose offerings a launch of `types` (one, or several with commas) needs: each, then its nearest
    current alternatives."""
    wanted = type_list(types) or [DEFAULT_TYPE]
    found = []
    for name in wanted + [a["type"] for w in wanted for a in current_alternatives(w, families, quota_groups)]:
        if name not in found:
            found.append(name)
    return found


def quota_patterns(quota_groups, market="on-demand"):
    """{quota code: the instance-family pattern that counts against it}, of on-demand or spot instances."""
    code = "spot_code" if market == "spot" else "on_demand_code"
    return {group[code]: group["family_pattern"] for group in quota_groups.values()}
