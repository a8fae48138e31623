"""The python_envs role's decisions (gpubox.box filters in python_envs.py): requirements, and the framework build
that runs on the box's GPU.

Loads the presets the role ships (roles/python_envs/defaults/main.yml) and the compute capability of every GPU in
the catalog. The pytorch preset's gpu_archs were read from the wheel PyPI serves for torch 2.9.1+cu128
(torch._C._cuda_getArchFlags(), which needs no GPU), the tensorflow preset's from tensorflow 2.21.0's
(tf.sysconfig.get_build_info()); the 2.11 list below is PyTorch's own (pytorch issue 182250).
"""

import hashlib
import pathlib

import pytest
import yaml

from ansible_collections.gpubox.box.plugins.filter import python_envs as envs

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((ROOT / "roles/python_envs/defaults/main.yml").read_text())
PRESETS = DEFAULTS["python_envs_presets"]
FAMILIES = yaml.safe_load((ROOT / "catalog/instance_types.yml").read_text())["gpubox_instance_families"]
ROOT_DIR = "/opt/envs"
TORCH_29_CU128 = "sm_70 sm_75 sm_80 sm_86 sm_90 sm_100 sm_120"
TORCH_211_CU128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
CU126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


def specs(python_envs, presets=PRESETS, gpu=True, capability="", extra=()):
    return envs.python_envs_specs(python_envs, presets, ROOT_DIR, "venv", gpu=gpu, extra_packages=list(extra),
                                  compute_capability=capability)


def one(name="pytorch", **kwargs):
    (spec,) = specs([name], **kwargs)
    return spec


def supported_capabilities():
    """The compute capability of every GPU gpubox sets up (the driver refuses Kepler and Maxwell)."""
    return sorted({data["compute_capability"] for data in FAMILIES.values()
                   if data["gpu_vendor"] == "nvidia" and data["architecture"] not in ("kepler", "maxwell")})


@pytest.mark.parametrize(
    ("archs", "capability", "runs"),
    [
        (["sm_86"], "8.9", True),  # Ada runs Ampere's sm_86 code (same major, newer minor)
        (["sm_89"], "8.6", False),
        (["sm_90"], "10.0", False),  # a new major never runs older SASS
        (["sm_120"], "10.0", False),
        (["compute_90"], "10.0", True),  # PTX is compiled for newer GPUs
        (["compute_90"], "8.9", False),
        (["sm_90a"], "9.0", True),
        (["sm_90a"], "10.0", False),
        (["sm_100f"], "10.3", True),
        (["sm_100f"], "11.0", False),
        (["compute_90a"], "9.0", True),
        (["compute_90a"], "10.0", False),
        (["SM_80"], "8.6", True),
        (["sm_120+PTX"], "12.1", True),
        (["sm_121"], "12.0", False),
        (["compute_100"], "12.0", True),
        (TORCH_29_CU128, "7.0", True),
        (TORCH_211_CU128, "7.0", False),
        (CU126, "7.0", True),
        ([], "7.0", False),
        ("", "9.0", False),
        (["sm_80"], "", False),
        (["sm_80"], "8", False),
    ],
)
def test_arch_covers(archs, capability, runs):
    assert envs.arch_covers(archs, capability) is runs


@pytest.mark.parametrize("capability", supported_capabilities())
@pytest.mark.parametrize("preset", ["pytorch", "tensorflow"])
def test_presets_run_on_every_gpu_gpubox_sets_up(preset, capability):
    spec = one(preset, capability=capability)
    assert spec["refusal"] == "" and spec["gpu_build"] == "" and spec["build_packages"] == []
    assert spec["arch_check"] is True and spec["cuda"] == "12"


def test_pytorch_preset_on_volta_keeps_pypis_build_since_2_9_1_still_has_sm_70():
    assert "sm_70" in PRESETS["pytorch"]["gpu_archs"]
    # The build's versions excluded: a box that had the CUDA 12.6 build (2.9.1+cu126) gets PyPI's wheels again.
    assert one(capability="7.0")["requirements"] == [
        "torch==2.9.1,!=2.9.1+cu126", "torchvision==0.24.1,!=0.24.1+cu126", "ipykernel==7.4.0", "matplotlib==3.11.2"]
    # On a CPU box there is no build to tell apart.
    assert one(gpu=False)["requirements"] == PRESETS["pytorch"]["packages"]


def test_volta_gets_the_cuda_12_6_build_when_the_default_wheels_drop_sm_70():
    presets = {**PRESETS, "pytorch": {**PRESETS["pytorch"], "gpu_archs": TORCH_211_CU128}}
    spec = one(presets=presets, capability="7.0", extra=["pandas==2.3.3"])
    assert spec["gpu_build"] == "CUDA 12.6" and spec["refusal"] == ""
    # The build from PyTorch's index alone, first; the rest from the usual index, without the build's packages.
    assert spec["build_index_url"] == "https://download.pytorch.org/whl/cu126"
    assert spec["build_packages"] == ["torch==2.9.1+cu126", "torchvision==0.24.1+cu126"]
    assert spec["requirements"] == ["ipykernel==7.4.0", "matplotlib==3.11.2", "pandas==2.3.3"]
    mirrored = envs.python_envs_specs(["pytorch"], presets, ROOT_DIR, "venv", gpu=True, compute_capability="7.0",
                                      index_urls={spec["build_index_url"]: "https://pypi.example.com/cu126/simple"})
    assert mirrored[0]["build_index_url"] == "https://pypi.example.com/cu126/simple"
    assert mirrored[0]["requirements_hash"] != spec["requirements_hash"]
    # The same settings on a GPU the default wheels cover: PyPI's build, another marker.
    hopper = one(presets=presets, capability="9.0", extra=["pandas==2.3.3"])
    assert hopper["gpu_build"] == "" and hopper["requirements"][0] == "torch==2.9.1,!=2.9.1+cu126"
    assert hopper["requirements_hash"] != spec["requirements_hash"]


def test_an_entry_with_its_own_packages_does_not_inherit_the_presets_gpu_list():
    (mine,) = specs([{"name": "mine", "preset": "pytorch", "packages": ["torch==2.11.0", "ipykernel==7.4.0"]}],
                    capability="7.0")
    # The preset's list and builds describe 2.9.1; 2.11 is left to the probe after install, never silently replaced.
    assert mine["build_packages"] == [] and mine["refusal"] == ""
    assert mine["requirements"] == ["torch==2.11.0", "ipykernel==7.4.0"] and mine["arch_check"] is True
    assert mine["cuda"] == ""  # nor the preset's CUDA: its own packages say what they need


@pytest.mark.parametrize(
    ("pin", "kept"),
    [
        ("torch==2.9.*", "torch==2.9.*,!=2.9.1+cu126"),
        ("torch", "torch!=2.9.1+cu126"),
        ("torch[opt] >= 2.9", "torch[opt] >= 2.9,!=2.9.1+cu126"),
        ('torch==2.9.1; python_version >= "3.10"', 'torch==2.9.1,!=2.9.1+cu126 ; python_version >= "3.10"'),
    ],
)
def test_a_preset_pin_of_any_form_excludes_the_builds_versions(pin, kept):
    presets = {**PRESETS, "pytorch": {**PRESETS["pytorch"], "packages": [pin, "ipykernel==7.4.0"]}}
    assert one(presets=presets, capability="9.0")["requirements"][0] == kept


@pytest.mark.parametrize("entry", [{"preset": "pytorch"}, {"name": ""}, 42])
def test_an_entry_without_a_name_is_refused(entry):
    with pytest.raises(envs.AnsibleFilterError, match="a dict with a name"):
        specs([entry])


def test_a_gpu_no_build_runs_on_is_refused_before_anything_is_installed():
    presets = {**PRESETS, "pytorch": {**PRESETS["pytorch"], "gpu_archs": TORCH_211_CU128, "gpu_builds": []}}
    refusal = one(presets=presets, capability="7.0")["refusal"]
    assert "environment pytorch" in refusal and "sm_70" in refusal and "compute capability 7.0" in refusal
    assert "python_envs_presets" in refusal and "g6.xlarge" in refusal
    with_builds = one(capability="3.7")["refusal"]
    assert "CUDA 12.6" in with_builds and "sm_37" in with_builds


@pytest.mark.parametrize(("gpu", "capability"), [(False, "7.0"), (True, ""), (False, "")])
def test_no_choice_and_no_check_without_a_known_gpu(gpu, capability):
    spec = one(gpu=gpu, capability=capability)
    assert spec["gpu_build"] == "" and spec["refusal"] == "" and spec["arch_check"] is False


def test_tensorflow_preset_on_a_cpu_host_is_not_checked():
    spec = one("tensorflow", gpu=False, capability="7.0")
    assert spec["requirements"][-1] == "tensorflow-cpu==2.21.0" and spec["arch_check"] is False


def test_the_install_marker_of_an_unchecked_environment_is_what_it_was():
    """Boxes configured before the build checks keep their markers where nothing is checked (a CPU box, JupyterLab's
    own environment): pip does not run again after the upgrade. The value is what the role's Jinja computed before:
    ('venv' ~ '3.12' ~ (requirements | join('\\n'))) | hash('sha256'), first 16 characters."""
    assert one("tensorflow", gpu=False, extra=["pandas"])["requirements_hash"] == "705c8f288592a816"
    # A checked environment's marker names the GPU: another GPU type checks the wheels again.
    assert one(capability="8.6")["requirements_hash"] != one(capability="8.9")["requirements_hash"]


def test_extra_packages_go_to_kernels_only_and_names_default():
    kernel, jupyter = specs([{"name": "k", "packages": ["six"]}, {"name": "jupyter", "packages": ["jupyterlab"],
                                                                    "kernel": "false"}], extra=["pandas"])
    assert kernel["requirements"] == ["six", "pandas"] and kernel["display_name"] == "Python 3 (k)"
    assert jupyter["requirements"] == ["jupyterlab"] and jupyter["kernel"] is False
    assert kernel["dir"] == f"{ROOT_DIR}/k"
    (mine,) = specs([{"name": "mine", "preset": "pytorch", "display_name": ""}], capability="9.0")
    assert mine["display_name"] == "" and mine["requirements"][0] == "torch==2.9.1,!=2.9.1+cu126"


@pytest.mark.parametrize(
    ("output", "capability", "fits"),
    [(TORCH_29_CU128 + "\n", "7.0", True), (" ".join(TORCH_211_CU128), "7.0", False), ("", "9.0", False),
     (TORCH_29_CU128, "8.9", True)],
)
def test_gpu_arch_problem_reads_what_the_probe_printed(output, capability, fits):
    problem = envs.gpu_arch_problem({"name": "pytorch"}, output, capability)
    assert (problem == "") is fits
    if not fits:
        assert "environment pytorch" in problem and "run configure again" in problem
    if output == "":
        assert "no GPU at all" in problem


def test_cuda_the_environments_need():
    assert envs.python_envs_cuda(["tensorflow", "pytorch"], PRESETS, compute_capability="7.0") == ["12"]
    assert envs.python_envs_cuda([{"name": "plain", "packages": ["six"]}], PRESETS) == []
    assert envs.python_envs_cuda(["pytorch"], PRESETS, gpu=False) == []


def test_filters_are_registered():
    assert set(envs.FilterModule().filters()) == {"python_envs_specs", "python_envs_cuda", "gpu_arch_covers",
                                                   "gpu_arch_problem", "python_envs_drift_evidence"}
