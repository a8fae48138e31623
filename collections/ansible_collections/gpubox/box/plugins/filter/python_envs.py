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

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - unit tests always have ansible-core
    class AnsibleFilterError(Exception):
        pass

DEFAULTS = {"python": "3.12", "packages": [], "gpu_packages": [], "cpu_packages": [], "conda_packages": [],
            "kernel": True}
ARCH_PATTERN = re.compile(r"^(sm|compute)_(\d+)(\d)([af]?)$")
CAPABILITY_PATTERN = re.compile(r"^(\d+)\.(\d)$")
NAME_PATTERN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
VERSION_PIN = re.compile(r"===?\s*([^\s,;]+)")


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
        found = ARCH_PATTERN.match(str(arch).strip().lower().replace("+ptx", ""))
        if not found:
            continue
        kind, built = found.group(1), (int(found.group(2)), int(found.group(3)))
        variant = found.group(4)
        if variant == "a":
            runs = gpu == built
        elif variant == "f":
            runs = gpu[0] == built[0] and gpu[1] >= built[1]
        elif kind == "compute":
            runs = gpu >= built
        else:
            runs = gpu[0] == built[0] and gpu[1] >= built[1]
        if runs:
            return True
    return False


def _package_name(requirement):
    found = NAME_PATTERN.match(str(requirement))
    return found.group(1).lower().replace("_", "-") if found else ""


def _excluding(requirement, versions):
    """requirement with != for each of versions (a build's local versions such as 2.9.1+cu126), before any marker:
    the same release from the preset's own index, never a build of it that an earlier run installed."""
    head, sep, marker = str(requirement).partition(";")
    head = head.rstrip()
    for version in versions:
        head += ("," if re.search(r"[<>=!~]", head) else "") + f"!={version}"
    return head + (f" {sep}{marker}" if sep else "")


def _choose_build(spec, gpu, compute_capability):
    """(build, requirements, refusal) for one resolved environment; build is {} for the preset's own wheels."""
    requirements = spec["packages"] + (spec["gpu_packages"] if gpu else spec["cpu_packages"])
    archs = spec.get("gpu_archs")
    builds = spec.get("gpu_builds") or []
    capability = _capability(compute_capability)
    if gpu and archs and capability and not arch_covers(archs, compute_capability):
        for build in builds:
            if arch_covers(build.get("gpu_archs"), compute_capability):
                names = {_package_name(pin) for pin in build.get("packages", [])}
                return build, [r for r in requirements if _package_name(r) not in names], ""
        listed = [b.get("name", "") for b in builds]
        return {}, requirements, (
            f"environment {spec['name']}: its GPU wheels are built for {' '.join(archs)}"
            + (f" (and the {', '.join(listed)} builds it lists for other GPUs)" if listed else "")
            + f"; this GPU is compute capability {compute_capability} ({_sm(capability)}), which none of them runs on. "
            f"Pin framework versions whose wheels still include {_sm(capability)} in the preset "
            f"(python_envs_presets: the pins and their gpu_archs), or launch a newer GPU type such as g6.xlarge."
        )
    if gpu and builds:
        # The packages a build would replace exclude its versions, so that a box that had that build (a baked image
        # moved to a newer GPU) gets the preset's own wheels again: ==2.9.1 alone is met by 2.9.1+cu126.
        local = {}
        for pin in (p for build in builds for p in build.get("packages", [])):
            found = VERSION_PIN.search(pin)
            if found and "+" in found.group(1):
                local.setdefault(_package_name(pin), []).append(found.group(1))
        requirements = [_excluding(r, local.get(_package_name(r), [])) for r in requirements]
    return {}, requirements, ""


def _resolve(entry, presets):
    """One python_envs entry merged over its preset. A dict entry that names its own packages does not inherit the
    preset's GPU list, builds and CUDA, which describe the preset's packages (the probe still checks what it installs)."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not entry.get("name"):
        raise AnsibleFilterError(f"python_envs: each entry is a preset name or a dict with a name, not {entry!r}.")
    preset = dict(presets.get(entry.get("preset", entry["name"]), {}))
    if {"packages", "gpu_packages"} & set(entry):
        for inherited in ("gpu_archs", "gpu_builds", "cuda"):
            preset.pop(inherited, None)
    return {**DEFAULTS, **preset, **entry}


def python_envs_specs(python_envs, presets, root, manager, gpu=False, extra_packages=(), compute_capability="",
                      index_urls=None):
    """python_envs resolved against the presets: one dict per environment, ready for the role's tasks.

    Adds display_name, dir, requirements (pip lines), build_index_url and build_packages (a framework build for this
    GPU, installed first from its own index; '' and [] for the preset's own wheels), gpu_build (its name),
    requirements_hash (names the install marker, so pip runs again only when something that matters changes),
    cuda (the CUDA major of the GPU wheels), arch_check (the installed wheels are checked against the GPU) and
    refusal ('' or why not). Extra packages go only into kernel environments (not into JupyterLab's own).
    index_urls: {a build's index URL: the one to use instead}, for a mirror.
    """
    specs = []
    for entry in python_envs or []:
        spec = _resolve(entry, presets)
        build, requirements, refusal = _choose_build(spec, bool(gpu), compute_capability)
        kernel = boolean(spec["kernel"], strict=False)
        if kernel:
            requirements = requirements + list(extra_packages or [])
        index = build.get("index_url", "")
        index = (index_urls or {}).get(index, index)
        build_packages = list(build.get("packages", []))
        arch_check = bool(gpu and spec.get("gpu_arch_probe") and _capability(compute_capability))
        # The build and the GPU are part of the marker only where they apply: another GPU type checks the wheels again.
        marker_input = f"{manager}{spec['python']}" + "\n".join(requirements)
        if build_packages:
            marker_input += f"\nbuild {index} " + " ".join(build_packages)
        if arch_check:
            marker_input += f"\ngpu {compute_capability}"
        specs.append({
            **spec,
            "display_name": spec["display_name"] if "display_name" in spec else f"Python 3 ({spec['name']})",
            "dir": f"{root}/{spec['name']}",
            "requirements": requirements,
            "build_index_url": index,
            "build_packages": build_packages,
            "kernel": kernel,
            "requirements_hash": hashlib.sha256(marker_input.encode("utf-8")).hexdigest()[:16],
            "gpu_build": build.get("name", index) if build else "",
            "cuda": str(build.get("cuda", spec.get("cuda", ""))),
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


def python_envs_drift_evidence(specs, manager, kernels_dir, venv_root, conda_prefix):
    """What the role leaves on the host, for gpubox.box.drift: {paths, globs}. Per environment: its interpreter, pip
    configuration, requirements and kernel spec, and the names of its install markers and installed packages (pip's
    and conda's), so that a package removed by hand, or a marker, makes the role run again."""
    if manager == "conda":
        paths = [f"{conda_prefix}/bin/conda", f"{conda_prefix}/.condarc", f"{conda_prefix}/gpubox"]
    else:
        paths = [venv_root]
    globs = []
    for spec in specs:
        env = spec["dir"]
        paths += [env, f"{env}/bin/python", f"{env}/pip.conf", f"{env}/gpubox-requirements.txt"]
        if manager == "conda":
            paths.append(f"{conda_prefix}/gpubox/{spec['name']}.yml")
        if spec["kernel"]:
            paths += [f"{kernels_dir}/{spec['name']}", f"{kernels_dir}/{spec['name']}/kernel.json"]
        globs += [f"{env}/.gpubox-*", f"{env}/conda-meta/*.json"]
        globs += [f"{env}/lib/python*/site-packages/*.{kind}" for kind in ("dist-info", "egg-info", "pth")]
    return {"paths": paths, "globs": globs}


class FilterModule:
    def filters(self):
        return {
            "python_envs_specs": python_envs_specs,
            "python_envs_cuda": python_envs_cuda,
            "gpu_arch_covers": arch_covers,
            "gpu_arch_problem": gpu_arch_problem,
            "python_envs_drift_evidence": python_envs_drift_evidence,
        }
