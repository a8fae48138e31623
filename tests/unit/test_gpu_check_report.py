"""Unit tests for gpubox.box.gpu_check_report_steady: what of the gpu_check report a re-run compares with the one it
saved, so that a reused check does not write the day's report again for its date or the GPUs' live readings.

Run from the repository root: python -m pytest tests/unit/test_gpu_check_report.py -q
"""

import copy
import json

from ansible_collections.gpubox.box.plugins.filter.gpu_check import gpu_check_report_steady

REPORT = {
    "name": "lab", "host": "lab", "date": "2026-12-03T07:00:00Z", "reused": False, "ok": True,
    "gpu": {"present": True, "driver_version": "580.95.05", "gpus": [{
        "index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "memory_total_mib": 81559,
        "memory_used_mib": 1, "clocks": {"sm_mhz": 345}, "power_draw_w": 70.5, "power_limit_w": 700.0,
        "utilization": {"gpu_percent": 0, "memory_percent": 0}}]},
    "envs": [{"name": "tensorflow", "status": "passed"}],
}


def changed(**changes):
    report = copy.deepcopy(REPORT)
    for path, value in changes.items():
        *parents, key = path.split("__")
        target = report
        for parent in parents:
            target = target[int(parent)] if isinstance(target, list) else target[parent]
        target[key] = value
    return report


def test_the_date_and_the_gpus_live_readings_are_left_out():
    saved = json.dumps(REPORT, indent=2, sort_keys=True)
    later = changed(date="2026-12-03T09:30:00Z", gpu__gpus__0__memory_used_mib=5, gpu__gpus__0__clocks={"sm_mhz": 1980},
                    gpu__gpus__0__power_draw_w=120.0, gpu__gpus__0__utilization={"gpu_percent": 3, "memory_percent": 1})
    assert gpu_check_report_steady(saved) == gpu_check_report_steady(json.dumps(later))
    assert gpu_check_report_steady(saved) == gpu_check_report_steady(later)


def test_what_the_check_found_or_how_it_ran_counts():
    steady = gpu_check_report_steady(REPORT)
    assert steady
    for other in (changed(reused=True), changed(ok=False), changed(envs=[{"name": "tensorflow", "status": "failed"}]),
                  changed(gpu__driver_version="580.105.08"), changed(gpu__gpus__0__uuid="GPU-2"),
                  changed(gpu__gpus__0__power_limit_w=350.0), changed(gpu__gpus=[])):
        assert gpu_check_report_steady(other) != steady


def test_a_saved_report_that_is_not_a_json_object_is_written_again():
    for text in ("", "{", "[]", "null", '"text"'):
        assert gpu_check_report_steady(text) == ""
