#!/usr/bin/env python3
"""gpubox GPU probe: what one Python environment sees and how fast it multiplies matrices.

Run it with the environment's own interpreter. It reports the deep-learning frameworks installed
(TensorFlow, PyTorch, JAX, Keras) and the devices each one sees, fits a small Keras model on the
GPU (or the CPU), and with --benchmark times matrix products in FP32, TF32, FP16 and BF16 through
keras.ops, compared with the datasheet FP32 figure. It prints one JSON object on stdout and
nothing else; exit status 0 when everything asked for worked, 1 when something did not (the JSON
says what), 2 on bad arguments.

Needs only the standard library to start; every framework is optional. gpubox's gpu_check role
copies it to the host; by hand:  /opt/envs/tensorflow/bin/python gpu_probe.py --benchmark
"""

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import statistics
import sys
import time
import traceback

PROBE_VERSION = 1
# Keras backends, in the order tried when neither KERAS_BACKEND nor keras.json names an installed one.
BACKENDS = ("tensorflow", "torch", "jax")
DEFAULT_SIZE = {"gpu": 8192, "cpu": 1024}
# Matrix-product variants: (label, dtype, TF32 allowed); tf32 is a GPU-only mode of FP32.
MATMUL_VARIANTS = {
    "gpu": (("fp32", "float32", False), ("tf32", "float32", True), ("fp16", "float16", False), ("bf16", "bfloat16", False)),
    "cpu": (("fp32", "float32", False), ("fp16", "float16", False), ("bf16", "bfloat16", False)),
}
# What to install when a framework sees no GPU on a GPU host.
GPU_BUILDS = {"tensorflow": "pip install 'tensorflow[and-cuda]'",
              "torch": "a CUDA wheel of torch, e.g. pip install torch from PyPI (not the +cpu build)",
              "jax": "pip install 'jax[cuda12]'"}
SLOW_CAUSES = ("GPU clocks held low (nvidia-smi -q -d CLOCK, PERFORMANCE: look for throttle reasons)",
               "a lowered power limit (nvidia-smi -q -d POWER)",
               "thermal throttling (nvidia-smi -q -d TEMPERATURE)",
               "another process on the GPU (nvidia-smi: Processes)")
# Each timed run repeats the product until it lasts about this long, so launch overhead does not count.
TARGET_RUN_SECONDS = 0.02
MAX_INNER = 50


# --- Pure helpers (unit-tested)

def choose_backend(env_value, config_value, available):
    """The Keras backend to use: (name, why).

    env_value: $KERAS_BACKEND or None; config_value: "backend" of ~/.keras/keras.json or None;
    available: the installed backends among BACKENDS. An explicit KERAS_BACKEND always wins (Keras
    reads it itself); keras.json wins when its backend is installed; else the first installed one.
    """
    if env_value:
        return env_value, "KERAS_BACKEND"
    if config_value and config_value in available:
        return config_value, "keras.json"
    for name in BACKENDS:
        if name in available:
            return name, "first installed backend"
    return None, "no Keras backend (tensorflow, torch or jax) is installed"


def keras_config_backend(keras_home=None):
    """The backend named in keras.json ($KERAS_HOME or ~/.keras), or None."""
    home = keras_home or os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as handle:
            return json.load(handle).get("backend")
    except (OSError, ValueError, AttributeError):
        return None


def matmul_tflops(size, seconds):
    """TFLOP/s of one size x size by size x size product that took seconds (2 n^3 operations)."""
    if seconds <= 0:
        return None
    return 2.0 * size ** 3 / seconds / 1e12


def inner_iterations(seconds_one, target=TARGET_RUN_SECONDS, cap=MAX_INNER):
    """How many products one timed run holds so that it lasts about target seconds."""
    if seconds_one <= 0:
        return cap
    return max(1, min(cap, int(round(target / seconds_one))))


def summarise_runs(size, seconds_per_product):
    """Median and spread of the timed runs, in seconds per product and TFLOP/s."""
    median = statistics.median(seconds_per_product)
    return {
        "size": size,
        "runs": len(seconds_per_product),
        "median_seconds": median,
        "tflops": round(matmul_tflops(size, median), 3),
        "best_tflops": round(matmul_tflops(size, min(seconds_per_product)), 3),
    }


def _tokens(name):
    return [t for t in re.split(r"[\s\-_/()]+", (name or "").upper()) if t and t != "NVIDIA" and t != "TESLA"]


def datasheet_for_gpu(gpu_name, models):
    """(model, FP32 TFLOP/s per GPU) from {model: tflops} whose words all appear in gpu_name.

    "NVIDIA H100 80GB" matches "NVIDIA H100 80GB HBM3" but not "NVIDIA H100 PCIe" (a slower card),
    and "NVIDIA L4" does not match "NVIDIA L40S". The model with the most words wins; (None, None)
    when none fits.
    """
    have = set(_tokens(gpu_name))
    best = (None, None, 0)
    for model, tflops in sorted((models or {}).items()):
        words = _tokens(model)
        if words and all(w in have for w in words) and len(words) > best[2]:
            best = (model, tflops, len(words))
    return best[0], best[1]


def compare_with_datasheet(measured_fp32, datasheet_fp32, min_ratio, source=""):
    """The measured FP32 throughput against the datasheet's, with a warning when it is below min_ratio."""
    if not measured_fp32 or not datasheet_fp32:
        return {"datasheet_fp32_tflops": datasheet_fp32, "source": source, "ratio": None, "ok": None,
                "warning": ""}
    ratio = measured_fp32 / float(datasheet_fp32)
    ok = ratio >= min_ratio
    warning = "" if ok else (
        f"FP32 matrix products reach {measured_fp32:.1f} TFLOP/s, {ratio:.0%} of the datasheet's "
        f"{float(datasheet_fp32):g} TFLOP/s ({source}), below {min_ratio:.0%}. Usual causes: "
        + "; ".join(SLOW_CAUSES) + ".")
    return {"datasheet_fp32_tflops": float(datasheet_fp32), "source": source, "ratio": round(ratio, 3),
            "ok": ok, "warning": warning}


def pick_device(requested, gpu_count):
    """'gpu' or 'cpu' for --device auto|gpu|cpu and the number of GPUs the backend sees; None: impossible."""
    if requested == "auto":
        return "gpu" if gpu_count else "cpu"
    if requested == "gpu" and not gpu_count:
        return None
    return requested


def status_of(result):
    """ok, failed (something asked for did not work) or skipped (no Keras and no framework to check)."""
    if result["errors"]:
        return "failed"
    if result["keras"] is None and not result["frameworks"]:
        return "skipped"
    return "ok"


def _tflops(entry):
    if not entry:
        return "-"
    if "error" in entry:
        return "error"
    return f"{entry['tflops']:.2f}"


def summary_lines(result):
    """The environment's findings as a few readable lines, for the report Ansible prints."""
    lines = []
    versions = [f"{name} {info['version']}" for name, info in sorted(result["frameworks"].items())]
    keras = f"keras {result['keras']} on {result['keras_backend']}" if result["keras"] else "no keras"
    lines.append(f"python {result['python_version']}; {keras}; " + (", ".join(versions) or "no framework"))
    for name, info in sorted(result["frameworks"].items()):
        devices = ", ".join(f"{d['type']} {d['name']}" for d in info["devices"]) or "none"
        lines.append(f"{name} sees {info['gpus']} GPU(s): {devices}")
    fit = result["fit"]
    if fit:
        lines.append(f"fit: {fit['epochs']} epochs of {fit['samples']} rows on {fit['device']} "
                     f"(weights on {fit['weights_device']}) in {fit['seconds']:.1f} s, "
                     f"loss {fit['loss_first']:.3f} -> {fit['loss_last']:.3f}")
    matmul = result["matmul"]
    if matmul:
        size = next((e["size"] for e in matmul.values() if "size" in e), "?")
        figures = ", ".join(f"{label} {_tflops(entry)}" for label, entry in matmul.items())
        lines.append(f"matmul {size}x{size} on {result['device']}, median TFLOP/s: {figures}")
    datasheet = result["datasheet"]
    if datasheet and datasheet.get("ratio") is not None:
        lines.append(f"FP32 is {datasheet['ratio']:.0%} of the datasheet's {datasheet['datasheet_fp32_tflops']:g} "
                     f"TFLOP/s ({datasheet['source']})")
    elif datasheet:
        lines.append(f"datasheet comparison: none ({datasheet['source']})")
    lines.extend(f"note: {n}" for n in result["notes"])
    lines.extend(f"WARNING: {w}" for w in result["warnings"])
    lines.extend(f"ERROR: {e}" for e in result["errors"])
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto",
                        help="where to fit and multiply: gpu fails when the backend sees none (default auto)")
    parser.add_argument("--benchmark", action="store_true", help="time matrix products too")
    parser.add_argument("--size", type=int, default=0, help="matrix size (default 8192 on GPU, 1024 on CPU)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per precision; the median counts")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--fit-epochs", type=int, default=2, help="epochs of the small Keras fit (0: no fit)")
    parser.add_argument("--datasheet-tflops", type=float, default=0.0,
                        help="datasheet FP32 TFLOP/s of one GPU, when the instance type is known")
    parser.add_argument("--datasheet-source", default="", help="where --datasheet-tflops comes from")
    parser.add_argument("--datasheet-models", default="{}",
                        help='JSON {"GPU model": FP32 TFLOP/s}, looked up by the GPU\'s name without --datasheet-tflops')
    parser.add_argument("--min-ratio", type=float, default=0.6, help="warn below this share of the datasheet FP32")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.size < 0 or args.fit_epochs < 0:
        parser.error("--runs must be at least 1; --warmup, --size and --fit-epochs not negative")
    try:
        args.datasheet_models = json.loads(args.datasheet_models)
    except ValueError as e:
        parser.error(f"--datasheet-models is not JSON: {e}")
    return args


# --- Framework adapters: versions, devices, TF32 switch, synchronisation

class Framework:
    name = ""

    def __init__(self):
        self.module = importlib.import_module(self.name)

    @property
    def version(self):
        return getattr(self.module, "__version__", None)

    def devices(self):
        return []

    def gpu_names(self):
        return [d["name"] for d in self.devices() if d["type"] == "GPU"]

    def set_tf32(self, allowed):
        """Allow or forbid TF32 for FP32 matrix products (GPU only)."""

    def sync(self, tensor):
        """Wait until the device has computed tensor."""

    def details(self):
        return {}


class TensorFlow(Framework):
    name = "tensorflow"

    def devices(self):
        tf = self.module
        found = []
        for device in tf.config.list_physical_devices():
            name = device.name
            if device.device_type == "GPU":
                try:
                    name = tf.config.experimental.get_device_details(device).get("device_name") or name
                except Exception:  # noqa: BLE001 - details are optional
                    pass
            found.append({"id": device.name, "type": device.device_type, "name": name})
        return found

    def set_tf32(self, allowed):
        self.module.config.experimental.enable_tensor_float_32_execution(allowed)

    def sync(self, tensor):
        experimental = getattr(self.module.test, "experimental", None)
        if experimental is not None and hasattr(experimental, "sync_devices"):
            experimental.sync_devices()
        else:
            # Reading one element back waits for the product that made it (the stream is in order).
            self.module.reshape(tensor, [-1])[0].numpy()

    def details(self):
        build = {}
        try:
            info = self.module.sysconfig.get_build_info()
            build = {k: info.get(k) for k in ("cuda_version", "cudnn_version") if info.get(k)}
        except Exception:  # noqa: BLE001 - build info is optional
            pass
        return {"built_with_cuda": bool(self.module.test.is_built_with_cuda()), **build}


class Torch(Framework):
    name = "torch"

    def devices(self):
        torch = self.module
        found = [{"id": "cpu", "type": "CPU", "name": platform.processor() or platform.machine()}]
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                found.append({"id": f"cuda:{i}", "type": "GPU", "name": torch.cuda.get_device_name(i)})
        return found

    def set_tf32(self, allowed):
        self.module.set_float32_matmul_precision("high" if allowed else "highest")

    def sync(self, tensor):
        if self.module.cuda.is_available():
            self.module.cuda.synchronize()

    def details(self):
        return {"cuda": self.module.version.cuda, "cuda_available": bool(self.module.cuda.is_available())}


class Jax(Framework):
    name = "jax"

    def devices(self):
        found = []
        for device in self.module.devices() + ([] if self.module.default_backend() == "cpu" else self.module.devices("cpu")):
            kind = "GPU" if device.platform in ("gpu", "cuda", "rocm") else device.platform.upper()
            found.append({"id": str(device), "type": kind, "name": getattr(device, "device_kind", str(device))})
        return found

    def set_tf32(self, allowed):
        self.module.config.update("jax_default_matmul_precision", "tensorfloat32" if allowed else "highest")

    def sync(self, tensor):
        tensor.block_until_ready()

    def details(self):
        return {"default_backend": self.module.default_backend()}


ADAPTERS = {"tensorflow": TensorFlow, "torch": Torch, "jax": Jax}


def tensor_device(value):
    """Where a backend tensor or Keras variable lives, as the backend names it."""
    value = getattr(value, "value", value)
    device = getattr(value, "device", None)
    if callable(device):
        device = device()
    if device is None and hasattr(value, "devices"):
        device = ",".join(sorted(str(d) for d in value.devices()))
    return str(device) if device is not None else None


# --- The checks

def device_scope(keras, device):
    """Place what runs inside on device ('gpu' or 'cpu').

    The torch backend takes its device from KERAS_TORCH_DEVICE (set before keras is imported), and its
    device scope with 'cpu:0' leaves variables without gradients (Keras 3.15), so it gets no scope.
    """
    if keras.backend.backend() == "torch":
        return contextlib.nullcontext()
    return keras.device(f"{device}:0")


def fit_small_model(keras, device, epochs):
    """Fit a small dense model on random data on device; the loss must fall."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 32)).astype("float32")
    y = (x @ rng.standard_normal((32, 1)) + 0.1 * rng.standard_normal((4096, 1))).astype("float32")
    with device_scope(keras, device):
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        start = time.perf_counter()
        history = model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
        seconds = time.perf_counter() - start
    losses = [float(v) for v in history.history["loss"]]
    return {
        "device": f"{device}:0",
        "weights_device": tensor_device(model.weights[0]),
        "epochs": len(losses),
        "samples": len(x),
        "seconds": round(seconds, 3),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "ok": all(v == v for v in losses) and (len(losses) < 2 or losses[-1] < losses[0]),
    }


def time_matmul(keras, framework, device, size, dtype, tf32, runs, warmup):
    """Median seconds per size x size product in dtype on device, after warm-up."""
    with device_scope(keras, device):
        a = keras.ops.cast(keras.random.normal((size, size), dtype="float32", seed=1), dtype)
        b = keras.ops.cast(keras.random.normal((size, size), dtype="float32", seed=2), dtype)
        framework.set_tf32(tf32)
        try:
            seconds_one = 0.0
            for _ in range(max(warmup, 1)):
                start = time.perf_counter()
                framework.sync(keras.ops.matmul(a, b))
                seconds_one = time.perf_counter() - start
            inner = inner_iterations(seconds_one)
            timings = []
            for _ in range(runs):
                start = time.perf_counter()
                for _ in range(inner):
                    c = keras.ops.matmul(a, b)
                framework.sync(c)
                timings.append((time.perf_counter() - start) / inner)
        finally:
            framework.set_tf32(False)
    result = summarise_runs(size, timings)
    result.update(dtype=dtype, tf32=tf32, inner=inner)
    return result


def probe(args, result):
    """Fill result in place; anything that goes wrong lands in result['errors']."""
    # Before any framework starts: take GPU memory as needed, not all of it at once.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    frameworks = {}
    for name in BACKENDS:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            frameworks[name] = ADAPTERS[name]()
            devices = frameworks[name].devices()
            result["frameworks"][name] = {"version": frameworks[name].version, "devices": devices,
                                          "gpus": sum(d["type"] == "GPU" for d in devices),
                                          **frameworks[name].details()}
        except Exception as e:  # noqa: BLE001 - a broken framework is a finding, not a crash
            result["errors"].append(f"{name} is installed but failed: {type(e).__name__}: {e}")

    if args.device == "gpu":
        for name, info in result["frameworks"].items():
            if not info["gpus"]:
                result["errors"].append(
                    f"{name} {info['version']} sees no GPU although the host has one: install its GPU build in this "
                    f"environment ({GPU_BUILDS[name]}).")

    backend, why = choose_backend(os.environ.get("KERAS_BACKEND"), keras_config_backend(), set(frameworks))
    if importlib.util.find_spec("keras") is not None:
        try:
            result["keras"] = importlib.metadata.version("keras")
        except importlib.metadata.PackageNotFoundError:
            result["keras"] = "unknown"
    else:
        result["notes"].append("Keras is not installed in this environment: no fit and no matrix products.")
        if not frameworks:
            result["notes"].append("No deep-learning framework (tensorflow, torch, jax) is installed either.")
        return
    if backend is None:
        result["errors"].append(f"Keras is installed but {why}.")
        return
    result["keras_backend"] = backend
    result["keras_backend_from"] = why
    if backend not in frameworks:
        result["errors"].append(f"KERAS_BACKEND is {backend}, which is not installed or failed to import.")
        return
    framework = frameworks[backend]
    device = pick_device(args.device, result["frameworks"][backend]["gpus"])
    if device is None:
        return  # reported above: the backend sees no GPU
    os.environ["KERAS_BACKEND"] = backend
    if backend == "torch":
        os.environ.setdefault("KERAS_TORCH_DEVICE", "cuda" if device == "gpu" else "cpu")
    import keras  # noqa: E402 - KERAS_BACKEND and KERAS_TORCH_DEVICE must be set first

    result["keras"] = keras.__version__
    result["device"] = f"{device}:0"
    result["gpu_name"] = framework.gpu_names()[0] if device == "gpu" else None

    if args.fit_epochs:
        try:
            result["fit"] = fit_small_model(keras, device, args.fit_epochs)
            if not result["fit"]["ok"]:
                result["errors"].append(f"The Keras fit did not converge: loss {result['fit']['loss_first']} "
                                        f"-> {result['fit']['loss_last']}.")
        except Exception as e:  # noqa: BLE001
            result["errors"].append(f"The Keras fit on {device}:0 failed: {type(e).__name__}: {e}")

    if not args.benchmark:
        return
    size = args.size or DEFAULT_SIZE[device]
    matmul = {}
    for label, dtype, tf32 in MATMUL_VARIANTS[device]:
        try:
            matmul[label] = time_matmul(keras, framework, device, size, dtype, tf32, args.runs, args.warmup)
        except Exception as e:  # noqa: BLE001 - e.g. FP16 products a CPU build does not implement
            matmul[label] = {"error": f"{type(e).__name__}: {e}"}
            if label == "fp32":
                result["errors"].append(f"FP32 matrix products on {device}:0 failed: {type(e).__name__}: {e}")
    result["matmul"] = matmul

    if device != "gpu":
        result["datasheet"] = {"datasheet_fp32_tflops": None, "source": "CPU: no datasheet comparison",
                               "ratio": None, "ok": None, "warning": ""}
        return
    source = args.datasheet_source
    datasheet = args.datasheet_tflops or None
    if not datasheet:
        model, datasheet = datasheet_for_gpu(result["gpu_name"], args.datasheet_models)
        source = f"catalog, GPU model {model}" if model else f"no catalog entry for {result['gpu_name']}"
    result["datasheet"] = compare_with_datasheet(matmul.get("fp32", {}).get("tflops"), datasheet, args.min_ratio, source)
    if result["datasheet"]["warning"]:
        result["warnings"].append(result["datasheet"]["warning"])


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Frameworks print to stdout from C++ too: send fd 1 to stderr while they run, keep stdout for the JSON.
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    result = {
        "probe_version": PROBE_VERSION,
        "python": sys.executable,
        "python_version": platform.python_version(),
        "frameworks": {},
        "keras": None,
        "keras_backend": None,
        "device": None,
        "gpu_name": None,
        "fit": None,
        "matmul": None,
        "datasheet": None,
        "notes": [],
        "warnings": [],
        "errors": [],
    }
    start = time.perf_counter()
    try:
        probe(args, result)
    except Exception as e:  # noqa: BLE001 - always print the JSON
        result["errors"].append(f"The probe crashed: {type(e).__name__}: {e}")
        result["traceback"] = traceback.format_exc()
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["ok"] = not result["errors"]
    result["status"] = status_of(result)
    try:
        result["summary"] = summary_lines(result)
    except Exception as e:  # noqa: BLE001 - the summary must not cost the findings
        result["summary"] = [f"(no summary: {type(e).__name__}: {e})"]
    json_out.write(json.dumps(result, sort_keys=True) + "\n")
    json_out.flush()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
