"""The gpu_check role's report: what of it a re-run compares with the report it saved."""

import json

# The GPUs' readings of the moment: they change from run to run while nothing the check depends on does.
LIVE_READINGS = ("memory_used_mib", "clocks", "power_draw_w", "utilization")


def gpu_check_report_steady(report):
    """A report (a dict, or the JSON text of a saved one) as canonical JSON, without its date and the GPUs' live
    readings; '' for a saved report that is not a JSON object (it is written again)."""
    if isinstance(report, str):
        try:
            report = json.loads(report)
        except ValueError:
            return ""
    if not isinstance(report, dict):
        return ""
    # A copy through JSON: plain values whatever containers Ansible passed in.
    report = json.loads(json.dumps(report, default=str))
    gpu = report.get("gpu") if isinstance(report.get("gpu"), dict) else {}
    gpus = [{key: value for key, value in each.items() if key not in LIVE_READINGS} if isinstance(each, dict) else each
            for each in gpu.get("gpus") or []]
    return json.dumps({**report, "date": "", "gpu": {**gpu, "gpus": gpus}}, sort_keys=True)


class FilterModule:
    def filters(self):
        return {"gpu_check_report_steady": gpu_check_report_steady}
