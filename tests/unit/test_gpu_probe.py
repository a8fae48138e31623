"""Unit tests for the gpu_check role's probe (roles/gpu_check/files/gpu_probe.py).

The pure parts are tested directly. The probe itself runs for real, on this machine's CPU, with every
interpreter in $GPUBOX_PROBE_PYTHONS (colon-separated) that has Keras and a backend; without such an
interpreter those tests are skipped (molecule/gpu-check runs the probe in the container's TensorFlow venv).

Run from the repository root: python -m pytest tests/unit/test_gpu_probe.py -q
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE_PATH = ROOT / "roles/gpu_check/files/gpu_probe.py"
spec = importlib.util.spec_from_file_location("gpu_probe", PROBE_PATH)
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

CATALOG_MODELS = {  # as the role passes them: catalog/instance_types.yml's NVIDIA models
    "NVIDIA T4": 8.1, "NVIDIA A10G": 31.2, "NVIDIA L4": 30.3, "NVIDIA L40S": 91.6,
    "NVIDIA A100 40GB": 19.5, "NVIDIA A100 80GB": 19.5, "NVIDIA H100 80GB": 67.0, "NVIDIA H200": 67.0,
    "NVIDIA B200": 75.0, "NVIDIA K80": 4.4, "NVIDIA V100 16GB": 15.7, "NVIDIA V100 32GB": 15.7, "NVIDIA M60": 4.8,
}


# --- Which Keras backend

def test_keras_backend_variable_wins():
    assert probe.choose_backend("jax", "torch", {"torch"}) == ("jax", "KERAS_BACKEND")


def test_keras_json_wins_when_its_backend_is_installed():
    assert probe.choose_backend(None, "torch", {"tensorflow", "torch"}) == ("torch", "keras.json")


def test_keras_json_naming_a_missing_backend_falls_back_to_an_installed_one():
    assert probe.choose_backend("", "jax", {"torch"}) == ("torch", "first installed backend")


def test_tensorflow_first_then_torch_then_jax():
    assert probe.choose_backend(None, None, {"jax", "torch", "tensorflow"})[0] == "tensorflow"
    assert probe.choose_backend(None, None, {"jax", "torch"})[0] == "torch"
    assert probe.choose_backend(None, None, {"jax"})[0] == "jax"


def test_no_backend_says_so():
    name, why = probe.choose_backend(None, None, set())
    assert name is None
    assert "tensorflow, torch or jax" in why


def test_keras_config_backend_reads_keras_json(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    assert probe.keras_config_backend(str(tmp_path)) == "jax"


def test_keras_config_backend_tolerates_missing_or_broken_files(tmp_path):
    assert probe.keras_config_backend(str(tmp_path)) is None
    (tmp_path / "keras.json").write_text("{not json")
    assert probe.keras_config_backend(str(tmp_path)) is None
    (tmp_path / "keras.json").write_text("[1, 2]")
    assert probe.keras_config_backend(str(tmp_path)) is None


# --- Throughput arithmetic

def test_matmul_tflops_counts_two_n_cubed_operations():
    assert probe.matmul_tflops(8192, 1.0) == pytest.approx(2 * 8192 ** 3 / 1e12)
    assert probe.matmul_tflops(1024, 0.002) == pytest.approx(1.073741824)
    assert probe.matmul_tflops(1024, 0) is None


def test_summarise_runs_reports_the_median_not_the_mean():
    summary = probe.summarise_runs(1000, [1.0, 1.0, 100.0, 1.0, 1.0])
    assert summary["median_seconds"] == 1.0
    assert summary["tflops"] == pytest.approx(0.002)
    assert summary["runs"] == 5
    assert summary["size"] == 1000


def test_summarise_runs_even_count_and_best():
    summary = probe.summarise_runs(1000, [4.0, 1.0, 2.0, 3.0])
    assert summary["median_seconds"] == 2.5
    assert summary["best_tflops"] == pytest.approx(0.002)


@pytest.mark.parametrize("seconds_one, expected", [(0.02, 1), (0.1, 1), (0.002, 10), (0.00001, 50), (0, 50), (0.014, 1)])
def test_inner_iterations_make_a_run_last_about_twenty_milliseconds(seconds_one, expected):
    assert probe.inner_iterations(seconds_one) == expected


# --- Datasheet look-up and comparison

@pytest.mark.parametrize("gpu_name, model, tflops", [
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB", 67.0),   # the fixture host's name (tests/fixtures/gpu-host-h100)
    ("NVIDIA A10G", "NVIDIA A10G", 31.2),
    ("Tesla T4", "NVIDIA T4", 8.1),
    ("NVIDIA L4", "NVIDIA L4", 30.3),
    ("NVIDIA L40S", "NVIDIA L40S", 91.6),                  # not the L4
    ("NVIDIA A100-SXM4-40GB", "NVIDIA A100 40GB", 19.5),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB", 19.5),
    ("Tesla V100-SXM2-16GB", "NVIDIA V100 16GB", 15.7),
    ("NVIDIA H200", "NVIDIA H200", 67.0),
])
def test_datasheet_for_gpu_matches_nvidia_smi_names(gpu_name, model, tflops):
    assert probe.datasheet_for_gpu(gpu_name, CATALOG_MODELS) == (model, tflops)


@pytest.mark.parametrize("gpu_name", ["NVIDIA H100 PCIe", "NVIDIA GeForce RTX 4090", "", None])
def test_datasheet_for_gpu_gives_nothing_for_gpus_the_catalog_does_not_know(gpu_name):
    # The H100 PCIe is slower than the SXM card the catalog lists: no figure beats a wrong one.
    assert probe.datasheet_for_gpu(gpu_name, CATALOG_MODELS) == (None, None)


def test_compare_with_datasheet_passes_at_or_above_the_threshold():
    # 51.6 TFLOP/s is what the fixture H100 measured in FP32 (tests/fixtures/gpu-host-h100/README.md).
    result = probe.compare_with_datasheet(51.6, 67.0, 0.6, "catalog, p5.48xlarge")
    assert result["ok"] is True
    assert result["ratio"] == pytest.approx(0.77, abs=0.001)
    assert result["warning"] == ""
    assert probe.compare_with_datasheet(60.0, 100.0, 0.6)["ok"] is True


def test_compare_with_datasheet_warns_below_the_threshold_with_the_usual_causes():
    result = probe.compare_with_datasheet(12.0, 31.2, 0.6, "catalog, g5.xlarge (NVIDIA A10G)")
    assert result["ok"] is False
    assert result["ratio"] == pytest.approx(0.385, abs=0.001)
    for words in ("12.0 TFLOP/s", "38%", "31.2", "g5.xlarge", "below 60%", "clocks", "power limit", "thermal",
                  "another process"):
        assert words in result["warning"]


def test_compare_with_datasheet_without_a_figure_decides_nothing():
    for measured, datasheet in ((50.0, None), (None, 67.0), (50.0, 0)):
        result = probe.compare_with_datasheet(measured, datasheet, 0.6, "x")
        assert result["ok"] is None
        assert result["warning"] == ""


# --- Device choice, status and summary

def test_pick_device():
    assert probe.pick_device("auto", 1) == "gpu"
    assert probe.pick_device("auto", 0) == "cpu"
    assert probe.pick_device("gpu", 8) == "gpu"
    assert probe.pick_device("gpu", 0) is None
    assert probe.pick_device("cpu", 1) == "cpu"


def _result(**changes):
    result = {"python_version": "3.12.3", "frameworks": {}, "keras": None, "keras_backend": None, "device": None,
              "fit": None, "matmul": None, "datasheet": None, "notes": [], "warnings": [], "errors": []}
    result.update(changes)
    return result


def test_status_of():
    assert probe.status_of(_result()) == "skipped"
    assert probe.status_of(_result(keras="3.15.1")) == "ok"
    assert probe.status_of(_result(frameworks={"torch": {}})) == "ok"
    assert probe.status_of(_result(keras="3.15.1", errors=["x"])) == "failed"


def test_summary_lines_of_a_gpu_run():
    result = _result(
        keras="3.15.1", keras_backend="torch", device="gpu:0",
        frameworks={"torch": {"version": "2.11.0", "gpus": 1, "devices": [
            {"type": "CPU", "name": "x86_64"}, {"type": "GPU", "name": "NVIDIA H100 80GB HBM3"}]}},
        fit={"epochs": 2, "samples": 4096, "device": "gpu:0", "weights_device": "cuda:0", "seconds": 1.25,
             "loss_first": 3.0, "loss_last": 1.0},
        matmul={"fp32": {"size": 8192, "tflops": 51.6}, "tf32": {"size": 8192, "tflops": 386.5},
                "fp16": {"error": "boom"}},
        datasheet={"ratio": 0.77, "datasheet_fp32_tflops": 67.0, "source": "catalog, GPU model NVIDIA H100 80GB"},
        warnings=["w1"],
    )
    lines = probe.summary_lines(result)
    assert lines[0] == "python 3.12.3; keras 3.15.1 on torch; torch 2.11.0"
    assert lines[1] == "torch sees 1 GPU(s): CPU x86_64, GPU NVIDIA H100 80GB HBM3"
    assert "on gpu:0 (weights on cuda:0) in 1.2 s, loss 3.000 -> 1.000" in lines[2]
    assert lines[3] == "matmul 8192x8192 on gpu:0, median TFLOP/s: fp32 51.60, tf32 386.50, fp16 error"
    assert lines[4] == "FP32 is 77% of the datasheet's 67 TFLOP/s (catalog, GPU model NVIDIA H100 80GB)"
    assert lines[5] == "WARNING: w1"


def test_parse_args_defaults_and_refusals():
    args = probe.parse_args([])
    assert (args.device, args.benchmark, args.size, args.runs, args.min_ratio) == ("auto", False, 0, 5, 0.6)
    assert args.datasheet_models == {}
    args = probe.parse_args(["--benchmark", "--datasheet-models", json.dumps(CATALOG_MODELS)])
    assert args.datasheet_models["NVIDIA A10G"] == 31.2
    for bad in (["--runs", "0"], ["--datasheet-models", "{no"], ["--device", "tpu"]):
        with pytest.raises(SystemExit):
            probe.parse_args(bad)


# --- The probe as a program

def _run(python, *args, env=None):
    completed = subprocess.run([python, str(PROBE_PATH), *args], capture_output=True, text=True, timeout=600,
                               env={**os.environ, **(env or {})}, cwd="/")
    lines = completed.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line, got: {completed.stdout!r}\nstderr: {completed.stderr[-2000:]}"
    return completed.returncode, json.loads(lines[0])


def test_probe_without_any_framework_reports_skipped():
    # The interpreter running the tests has no deep-learning framework; the probe must still answer in JSON.
    if any(importlib.util.find_spec(name) for name in ("keras", "tensorflow", "torch", "jax")):
        pytest.skip("this interpreter has a deep-learning framework")
    rc, result = _run(sys.executable, "--benchmark")
    assert rc == 0
    assert result["status"] == "skipped"
    assert result["ok"] is True
    assert "Keras is not installed" in result["notes"][0]


def test_probe_on_a_gpu_host_without_a_framework_is_not_a_failure():
    if any(importlib.util.find_spec(name) for name in ("keras", "tensorflow", "torch", "jax")):
        pytest.skip("this interpreter has a deep-learning framework")
    rc, result = _run(sys.executable, "--device", "gpu")
    assert (rc, result["status"]) == (0, "skipped")


def test_probe_refuses_bad_arguments():
    completed = subprocess.run([sys.executable, str(PROBE_PATH), "--runs", "0"], capture_output=True, text=True)
    assert completed.returncode == 2
    assert "--runs" in completed.stderr


def _keras_pythons():
    found = []
    for python in filter(None, os.environ.get("GPUBOX_PROBE_PYTHONS", "").split(":")):
        check = subprocess.run([python, "-c", "import importlib.util as u, sys; sys.exit(0 if u.find_spec('keras') else 1)"],
                               capture_output=True)
        if check.returncode == 0:
            found.append(python)
    return found


KERAS_PYTHONS = _keras_pythons()


@pytest.mark.skipif(not KERAS_PYTHONS, reason="no interpreter with Keras in GPUBOX_PROBE_PYTHONS")
@pytest.mark.parametrize("python", KERAS_PYTHONS)
def test_probe_fits_and_multiplies_on_the_cpu(python):
    rc, result = _run(python, "--benchmark", "--device", "cpu", "--runs", "3")
    assert rc == 0, result["errors"]
    assert result["status"] == "ok"
    backend = result["keras_backend"]
    assert backend in ("tensorflow", "torch", "jax")
    assert result["keras"].startswith("3.")
    assert result["frameworks"][backend]["version"]
    assert any(d["type"] == "CPU" for d in result["frameworks"][backend]["devices"])
    assert result["device"] == "cpu:0"
    assert result["fit"]["ok"] and result["fit"]["epochs"] == 2
    assert "cpu" in result["fit"]["weights_device"].lower()
    assert set(result["matmul"]) == {"fp32", "fp16", "bf16"}
    fp32 = result["matmul"]["fp32"]
    assert fp32["size"] == 1024 and fp32["runs"] == 3 and fp32["tflops"] > 0
    assert result["datasheet"]["ok"] is None


@pytest.mark.skipif(not KERAS_PYTHONS, reason="no interpreter with Keras in GPUBOX_PROBE_PYTHONS")
@pytest.mark.parametrize("python", KERAS_PYTHONS)
def test_probe_asked_for_a_gpu_it_cannot_see_fails_with_what_to_install(python):
    rc, result = _run(python, "--device", "gpu", "--fit-epochs", "0")
    assert rc == 1
    assert result["status"] == "failed"
    assert any("sees no GPU although the host has one" in e for e in result["errors"])
