"""Decisions for the python_envs role: each environment's requirements, and which framework build fits the GPU.

python_envs names presets (python_envs_presets) or gives dicts of the same fields. A preset whose GPU wheels are
built for a known set of GPUs says so in gpu_archs (read from the wheel itself, see the role's README); when the
host's GPU (its compute capability, from the instance catalog) is not covered, the first of gpu_builds that covers
it is used instead, or the environment is refused with the reason. tests/unit/test_python_envs.py holds the
decision tables.
"""

import hashlib
import re

from ansible.module_utils.parsing.convert_bool import boolean

DEFAULTS = {"python": "3.12", "packages": [], "gpu_packages": [], "cpu_packages": [], "conda_packages": [],
            "kernel": True}
ARCH_PATTERN = re.compile(r"^(sm|compute)_(\d+)(\d)([af]?)$")
CAPABILITY_PATTERN = re.compile(r"^(\d+)\.(\d)$")
NAME_PATTERN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _capability(value):
    found = CAPABILITY_PATTERN.match(str(value or "").strip())
    return (int(found.group(1)), int(found.group(2))) if found else None


def _sm(capability):
    return f"sm_{capability[0]}{capability[1]}"


def arch_covers(archs, compute_capability):
    """Whether a build for archs (sm_80, compute_90, sm_90a ...) runs on a GPU of this compute capability.

    CUDA's rules: sm_XY code runs on the same major with an equal or higher minor; PTX (compute_XY) is compiled
    for any GPU of XY or newer; an 'a' or 'f' variant (sm_90a, sm_100f) only on that exact major.minor or, for 'f',
    that major. archs: a list, or the space-separated string torch._C._cuda_getArchFlags() prints.
    """
    gpu = _capability(compute_capability)
    if gpu is None:
        return False
    if isinstance(archs, str):
        archs = archs.split()
    for arch in archs or []:
        found = ARCH_PATTERN.match(str(arch).strip())
        if not found:
            continue
        kind, built = found.group(1), (int(found.group(2)), int(found.group(3)))
        variant = found.group(4)
        if kind == "compute" and gpu >= built and not variant:
            return True
        if kind == "sm" and variant == "a" and gpu == built:
            return True
        if kind == "sm" and variant in ("", "f") and gpu[0] == built[0] and gpu[1] >= built[1]:
            return True
    return False


def _package_name(requirement):
    found = NAME_PATTERN.match(str(requirement))
    return found.group(1).lower().replace("_", "-") if found else ""


def _with_build(requirements, build):
    """requirements with the build's pins in place of the same packages, and its index first."""
    pins = {_package_name(r): r for r in build.get("packages", [])}
    replaced = [pins.pop(_package_name(r), r) for r in requirements]
    index = [f"--extra-index-url {build['extra_index_url']}"] if build.get("extra_index_url") else []
    return index + replaced + list(pins.values())


def _choose_build(spec, gpu, compute_capability):
    """(build name, requirements, CUDA, refusal) for one resolved environment."""
    requirements = spec["packages"] + (spec["gpu_packages"] if gpu else spec["cpu_packages"])
    default = ("", requirements, str(spec.get("cuda", "")), "")
    archs = spec.get("gpu_archs")
    capability = _capability(compute_capability)
    if not gpu or not archs or capability is None or arch_covers(archs, compute_capability):
        return default
    for build in spec.get("gpu_builds") or []:
        if arch_covers(build.get("gpu_archs"), compute_capability):
            return (build.get("name", build.get("extra_index_url", "")), _with_build(requirements, build),
                    str(build.get("cuda", spec.get("cuda", ""))), "")
    builds = [b.get("name", "") for b in spec.get("gpu_builds") or []]
    refusal = (
        f"environment {spec['name']}: its GPU wheels are built for {' '.join(archs)}"
        + (f" (and the {', '.join(builds)} builds it lists for other GPUs)" if builds else "")
        + f"; this GPU is compute capability {compute_capability} ({_sm(capability)}), which none of them runs on. "
        f"Pin framework versions whose wheels still include {_sm(capability)} in the preset "
        f"(python_envs_presets), or launch a newer GPU type such as g6.xlarge."
    )
    return ("", requirements, default[2], refusal)


def python_envs_specs(python_envs, presets, root, manager, gpu=False, extra_packages=(), compute_capability=""):
    """python_envs resolved against the presets: one dict per environment, ready for the role's tasks.

    Adds display_name, dir, requirements (pip lines: an --extra-index-url first when a build asks for it),
    requirements_hash (names the install marker, so pip runs again only when something that matters changes),
    gpu_build (the build chosen for this GPU, '' for the preset's own), cuda (the CUDA major of the GPU wheels),
    arch_check (the GPU must be checked against the installed wheels) and refusal ('' or why not).
    Extra packages go only into kernel environments (not into JupyterLab's own).
    """
    specs = []
    for entry in python_envs or []:
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        preset = presets.get(entry.get("preset", entry.get("name")), {})
        spec = {**DEFAULTS, **preset, **entry}
        build, requirements, cuda, refusal = _choose_build(spec, bool(gpu), compute_capability)
        if boolean(spec["kernel"], strict=False):
            requirements = requirements + list(extra_packages or [])
        arch_check = bool(gpu and spec.get("gpu_arch_probe") and _capability(compute_capability))
        # The GPU is part of the marker only where it is checked: another GPU type checks the wheels again.
        marker_input = f"{manager}{spec['python']}" + "\n".join(requirements)
        if arch_check:
            marker_input += f"\ngpu {compute_capability}"
        specs.append({
            **spec,
            "display_name": spec["display_name"] if "display_name" in spec else f"Python 3 ({spec['name']})",
            "dir": f"{root}/{spec['name']}",
            "requirements": requirements,
            "kernel": boolean(spec["kernel"], strict=False),
            "requirements_hash": hashlib.sha256(marker_input.encode("utf-8")).hexdigest()[:16],
            "gpu_build": build,
            "cuda": cuda,
            "arch_check": arch_check,
            "refusal": refusal,
        })
    return specs


def python_envs_cuda(python_envs, presets, gpu=True, compute_capability=""):
    """The CUDA major versions the environments' GPU wheels need, for the driver check ([] on a CPU box)."""
    if not gpu:
        return []
    specs = python_envs_specs(python_envs, presets, "", "", gpu=True, compute_capability=compute_capability)
    return sorted({s["cuda"] for s in specs if s["cuda"]})


def gpu_arch_problem(env, probe_output, compute_capability):
    """'' when the installed wheels (probe_output: the arch flags they print) run on this GPU, else why not."""
    archs = str(probe_output or "").split()
    if arch_covers(archs, compute_capability):
        return ""
    capability = _capability(compute_capability)
    gpu = _sm(capability) if capability else str(compute_capability)
    return (
        f"environment {env['name']}: the installed GPU wheels are built for {' '.join(archs) or 'no GPU at all'}, "
        f"not for this GPU ({gpu}, compute capability {compute_capability}): it would run on the CPU only. "
        f"Pin a build that includes {gpu} in the preset's packages (or its gpu_builds) and run configure again."
    )


class FilterModule:
    def filters(self):
        return {
            "python_envs_specs": python_envs_specs,
            "python_envs_cuda": python_envs_cuda,
            "gpu_arch_covers": arch_covers,
            "gpu_arch_problem": gpu_arch_problem,
        }
