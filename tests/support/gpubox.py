"""Shared by the AWS and end-to-end tests: moto server on 127.0.0.1, gpubox's entry playbooks run as a user would, boto3."""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from standin import MOTO_UBUNTU_AMI, REPO, free_port, start_moto

REGION = "us-east-1"
# AMIs that moto ships: an x86_64 Ubuntu image and an arm64 Amazon Linux image.
UBUNTU_AMI = MOTO_UBUNTU_AMI
ARM_AMI = "ami-0e9271c829888680e"
MY_CIDR = "203.0.113.7/32"


@contextlib.contextmanager
def moto_server():
    """A moto server on a free port of 127.0.0.1, stopped afterwards: yields its URL."""
    port = free_port()
    proc = start_moto(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def reset_moto(url):
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST"), timeout=10)


@dataclass
class Result:
    rc: int
    output: dict
    stderr: str
    messages: list = field(default_factory=list)

    @property
    def changed(self):
        return sum(s.get("changed", 0) for s in self.output.get("stats", {}).values())

    @property
    def text(self):
        return "\n".join(self.messages) + "\n" + self.stderr

    def said(self, *fragments):
        """True when one message contains every fragment."""
        return any(all(f in m for f in fragments) for m in self.messages)

    def ran(self, task):
        """True when a task of that name ran (was not skipped) on some host."""
        return any(not result.get("skipped")
                   for play in self.output.get("plays", []) for found in play.get("tasks", [])
                   if found.get("task", {}).get("name", "").split(" : ")[-1] == task
                   for result in found.get("hosts", {}).values())


def _messages(output):
    found = []
    for play in output.get("plays", []):
        for task in play.get("tasks", []):
            for host_result in task.get("hosts", {}).values():
                for result in [host_result] + host_result.get("results", []):
                    msg = result.get("msg")
                    if isinstance(msg, list):
                        found.extend(str(m) for m in msg)
                    elif msg:
                        found.append(" ".join(str(msg).split()))
                    found.extend(result.get("warnings", []))
    return found


class Gpubox:
    """Runs the entry playbooks as a user would, with a private HOME and AWS pointed at moto."""

    def __init__(self, moto, home, repo=REPO):
        """moto: the AWS stand-in's URL; None for host-only runs (-i host,), where no AWS call is made."""
        self.moto = moto
        self.home = home
        self.repo = repo
        self._control_dir = tempfile.TemporaryDirectory(prefix="gpubox-cp-")  # removed with this object
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            # SSH's control sockets in a short folder: under pytest's deep temporary HOME (deeper still with xdist's
            # worker folders) the path passes the 108-byte limit of a Unix socket, and the login fails.
            "ANSIBLE_SSH_CONTROL_PATH_DIR": self._control_dir.name,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            **({"AWS_ENDPOINT_URL": moto} if moto else {}),
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
            # Tests talk to 127.0.0.1 only: never let botocore look for credentials at the instance metadata address.
            "AWS_EC2_METADATA_DISABLED": "true",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
            "ANSIBLE_LOCAL_TEMP": str(home / ".ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1",
        }

    def run(self, playbook, env=None, timeout=600, inventory=None, **extra):
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), playbook]
        if inventory:
            cmd += ["-i", inventory]
        if extra:
            cmd += ["-e", json.dumps(extra)]
        proc = subprocess.run(cmd, cwd=self.repo, env={**self.env, **(env or {})},
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        try:
            output = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            output = {}
        return Result(proc.returncode, output, proc.stderr + proc.stdout[:2000] * (not output), _messages(output))

    def launch(self, env=None, **extra):
        settings = {"type": "g5.xlarge", "ami": UBUNTU_AMI, "ssh_cidr": MY_CIDR, "configure": False}
        settings.update(extra)
        return self.run("launch.yml", env=env, **settings)


class Aws:
    def __init__(self, url, region=REGION):
        kw = dict(endpoint_url=url, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")
        self.ec2 = boto3.client("ec2", **kw)
        self.ssm = boto3.client("ssm", **kw)
        self.url = url

    def in_region(self, region):
        return Aws(self.url, region)

    def identity(self, user):
        """Another AWS identity in this account (an IAM user with an access key): its environment for Gpubox.run."""
        iam = boto3.client("iam", endpoint_url=self.url, region_name=REGION, aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    def instances(self, name=None, states=("pending", "running", "stopping", "stopped")):
        filters = [{"Name": "instance-state-name", "Values": list(states)}]
        if name:
            filters.append({"Name": "tag:gpubox:name", "Values": [name]})
        pages = self.ec2.describe_instances(Filters=filters)["Reservations"]
        return [i for r in pages for i in r["Instances"]]

    def instance(self, name="gpubox"):
        found = self.instances(name)
        assert len(found) == 1, f"expected one instance of box {name}, found {len(found)}"
        return found[0]

    def groups(self):
        return [g for g in self.ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]

    def keys(self):
        return self.ec2.describe_key_pairs()["KeyPairs"]

    def volumes(self, **tags):
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        return self.ec2.describe_volumes(Filters=filters)["Volumes"]

    def data_volumes(self, name="gpubox"):
        return self.volumes(**{"gpubox:name": name, "gpubox:role": "data"})

    def snapshot(self):
        """What exists, to prove that a refused command created nothing."""
        return {
            "instances": sorted(i["InstanceId"] for i in self.instances()),
            "groups": sorted(g["GroupId"] for g in self.groups()),
            "keys": sorted(k["KeyName"] for k in self.keys()),
            "volumes": sorted(v["VolumeId"] for v in self.ec2.describe_volumes()["Volumes"]),
        }

    @staticmethod
    def tags(resource):
        return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}
