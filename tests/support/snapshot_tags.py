"""EC2's CreateImage with tags for snapshots, played in front of moto, which fails such a request.

EC2 tags an image's snapshots as it makes them, and gpubox relies on that (its IAM policy allows no tags
afterwards). This proxy, in front of moto or of the recording proxy (aws_proxy.py), takes the snapshot tags out of
the request and, once moto has made the image, writes them on its snapshots. It also records what each CreateImage
asked for (moto ignores its block device mappings).
"""

import contextlib
import re
import urllib.parse

from support.aws_proxy import AwsProxy


class SnapshotTagsProxy(AwsProxy):
    """EC2's CreateImage with TagSpecifications for snapshots, played in front of moto (see the module docstring)."""

    def __init__(self, upstream, ec2):
        super().__init__(upstream)
        self.ec2 = ec2  # moto, directly: what the proxy does for EC2 is not a call of the playbooks
        self.asked = []  # each CreateImage's form fields, as gpubox sent them

    def answer(self, method, path, headers, body):
        fields = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        if dict(fields).get("Action") != "CreateImage":
            return super().answer(method, path, headers, body)
        self.asked.append(dict(fields))
        specs = sorted({m.group(1) for k, _ in fields if (m := re.match(r"TagSpecification\.(\d+)\.", k))}, key=int)
        snapshot_specs = [n for n in specs if dict(fields).get(f"TagSpecification.{n}.ResourceType") == "snapshot"]
        tags = {}
        for n in snapshot_specs:
            keys = {k: v for k, v in fields if k.startswith(f"TagSpecification.{n}.Tag.")}
            for k, v in keys.items():
                if k.endswith(".Key"):
                    tags[v] = keys[k[:-len("Key")] + "Value"]
        kept, renumber = [], {n: str(i) for i, n in enumerate([n for n in specs if n not in snapshot_specs], 1)}
        for k, v in fields:
            m = re.match(r"TagSpecification\.(\d+)\.(.*)", k)
            if not m:
                kept.append((k, v))
            elif m.group(1) in renumber:
                kept.append((f"TagSpecification.{renumber[m.group(1)]}.{m.group(2)}", v))
        response = super().answer(method, path, headers, urllib.parse.urlencode(kept).encode())
        made = re.search(rb"<imageId>(ami-[0-9a-f]+)</imageId>", response.body, re.IGNORECASE)
        if 200 <= response.status < 300 and made and tags:
            image = self.ec2.describe_images(ImageIds=[made.group(1).decode()])["Images"][0]
            snapshots = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
            self.ec2.create_tags(Resources=snapshots, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        return response


@contextlib.contextmanager
def snapshot_tags(gpubox, upstream, ec2):
    """Run gpubox's playbooks (support.gpubox.Gpubox) through a SnapshotTagsProxy in front of upstream (a URL)."""
    with SnapshotTagsProxy(upstream, ec2) as shim:
        endpoint = gpubox.env["AWS_ENDPOINT_URL"]
        gpubox.env["AWS_ENDPOINT_URL"] = shim.url
        try:
            yield shim
        finally:
            gpubox.env["AWS_ENDPOINT_URL"] = endpoint
