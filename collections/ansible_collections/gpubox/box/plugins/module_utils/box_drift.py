"""The evidence a role may be skipped on (gpubox.box.drift, gpubox.box.host_gather): how what a role left on a host
reads now, and how that compares with the record of its last complete run."""

import glob
import grp
import hashlib
import json
import os
import pwd
import re
import stat
import tempfile

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHOWN = 20
RECORD_DIR = "/var/lib/gpubox/drift"
SERVICE_PROPERTIES = ("ActiveState", "UnitFileState", "FragmentPath", "DropInPaths")
# gpubox.box.drift's options (its module checks them on the host, its action on the controller).
ARGUMENT_SPEC = dict(
    name=dict(type="str", default=""),
    state=dict(type="str", choices=["check", "record", "absent", "changing"], default="check"),
    settings=dict(type="str", default=""),
    paths=dict(type="list", elements="path", default=[]),
    globs=dict(type="list", elements="str", default=[]),
    services=dict(type="list", elements="str", default=[]),
    packages=dict(type="list", elements="str", default=[]),
    mounts=dict(type="list", elements="path", default=[]),
    record_dir=dict(type="path", default=RECORD_DIR),
)
# Each kind of evidence key, and the option of gpubox.box.drift that reads it.
KINDS = {"path": "paths", "glob": "globs", "service": "services", "package": "packages", "mount": "mounts"}


class EvidenceError(Exception):
    """The evidence could not be read (the module fails with this message)."""


def keys_digest(keys):
    """What a record's evidence is about, in a few bytes: gpubox.box.drift compares it with the keys it would read."""
    return hashlib.sha256(json.dumps(sorted(set(keys))).encode("utf-8")).hexdigest()


def params_for(keys):
    """gpubox.box.drift's options that read these evidence keys."""
    params = {option: [] for option in KINDS.values()}
    for key in sorted(set(keys)):
        kind, _sep, what = key.partition(":")
        if kind in KINDS:
            params[KINDS[kind]].append(what)
    return params


def _owner(st):
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}"


def path_evidence(path):
    """How a path reads: a file's mode, owner and content digest; a directory's mode and owner; or that it is absent.
    Symbolic links are followed (a venv's python is one), and their target is part of the evidence."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "absent"
    except OSError as err:
        return f"unreadable ({err.strerror})"
    link = f" -> {os.readlink(path)}" if os.path.islink(path) else ""
    mode = f"{stat.S_IMODE(st.st_mode):04o}"
    if stat.S_ISDIR(st.st_mode):
        return f"directory {mode} {_owner(st)}{link}"
    if not stat.S_ISREG(st.st_mode):
        return f"special {mode} {_owner(st)}{link}"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"file {mode} {_owner(st)} sha256:{digest.hexdigest()}{link}"


def mountinfo(text):
    """Mount point -> 'source fstype' from /proc/self/mountinfo (the last mount on a point is the one seen)."""
    mounts = {}
    for line in text.splitlines():
        before, after = line.partition(" - ")[::2]
        fields, rest = before.split(), after.split()
        if len(fields) < 5 or len(rest) < 2:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        mounts[point] = f"{rest[1]} {rest[0]}"
    return mounts


def systemctl_show(text, units):
    """Unit -> its properties, from `systemctl show --property=... UNIT...` (blocks in the order asked)."""
    blocks = text.strip().split("\n\n") if text.strip() else []
    shown = {}
    for unit, block in zip(units, blocks):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        shown[unit] = " ".join(f"{key}={props.get(key, '')}" for key in SERVICE_PROPERTIES)
    return shown


def package_versions(module, packages):
    """Package -> installed version, or 'absent', from dpkg-query or rpm."""
    if not packages:
        return {}
    found = {}
    dpkg = module.get_bin_path("dpkg-query")
    if dpkg:
        out = module.run_command([dpkg, "-W", "-f=${Package}\t${db:Status-Abbrev}\t${Version}\n", *packages])[1]
        for line in out.splitlines():
            parts = line.split("\t")
            # Status-Abbrev: wanted state, then current state ('i': installed, also for a held package: "hi").
            if len(parts) == 3 and parts[1][1:2] == "i":
                found[parts[0]] = parts[2]
    else:
        rpm = module.get_bin_path("rpm")
        if not rpm:
            raise EvidenceError("neither dpkg-query nor rpm is installed: the packages cannot be read")
        out = module.run_command([rpm, "-q", "--qf", "%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}\n", *packages])[1]
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 2:
                found[parts[0]] = (found.get(parts[0], "") + " " + parts[1]).strip()
    return {package: found.get(package, "absent") for package in packages}


def gather(module, params):
    """The evidence, key -> how it reads now (EvidenceError, or OSError from a path, when it cannot be read)."""
    evidence = {}
    for path in params["paths"]:
        evidence[f"path:{path}"] = path_evidence(path)
    for pattern in params["globs"]:
        evidence[f"glob:{pattern}"] = sorted(glob.glob(pattern))
    if params["services"]:
        units = params["services"]
        systemctl = module.get_bin_path("systemctl")
        if not systemctl:
            raise EvidenceError("systemctl is not installed: the services cannot be read")
        rc, out, err = module.run_command([systemctl, "show", "--property=" + ",".join(SERVICE_PROPERTIES), *units])
        if rc != 0:
            raise EvidenceError(f"systemctl show failed: {err.strip()}")
        for unit, state in systemctl_show(out, units).items():
            evidence[f"service:{unit}"] = state
    for package, version in package_versions(module, params["packages"]).items():
        evidence[f"package:{package}"] = version
    if params["mounts"]:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            mounted = mountinfo(handle.read())
        for point in params["mounts"]:
            evidence[f"mount:{point}"] = mounted.get(os.path.normpath(point), "not mounted")
    return evidence


def describe(key, was, now):
    """One line saying what changed."""
    if isinstance(was, list) and isinstance(now, list):
        gone, new = sorted(set(was) - set(now)), sorted(set(now) - set(was))
        parts = ([f"gone: {', '.join(os.path.basename(p) for p in gone[:5])}{' ...' if len(gone) > 5 else ''}"]
                 if gone else [])
        parts += ([f"new: {', '.join(os.path.basename(p) for p in new[:5])}{' ...' if len(new) > 5 else ''}"]
                  if new else [])
        return f"{key}: {'; '.join(parts)}"
    if was is None:
        return f"{key}: not in the record"
    if key.startswith("path:") and "sha256:" in str(was) and "sha256:" in str(now):
        return f"{key}: {'content changed' if was.split()[:3] == now.split()[:3] else 'mode or owner changed'}"
    return f"{key}: was {was}, now {now}"


def evidence_drift(recorded, evidence):
    """(drifted keys, lines saying what drifted) between a record's evidence and what reads now."""
    keys = sorted(set(recorded) | set(evidence))
    drifted = [key for key in keys if recorded.get(key) != evidence.get(key)]
    return drifted, [describe(key, recorded.get(key), evidence.get(key)) for key in drifted]


def settings_drift(recorded, settings, drifted, lines):
    """The evidence's drift, with the settings first when they differ from the record's."""
    if recorded != settings:
        return ["settings", *drifted], ["the settings or gpubox's code changed since the last complete run", *lines]
    return drifted, lines


def compare(record, settings, evidence):
    """(drifted keys, lines saying what drifted) between a record and what reads now."""
    if record is None:
        return ["record"], ["no record of a complete run"]
    return settings_drift(record.get("settings"), settings, *evidence_drift(record.get("evidence", {}), evidence))


def unsafe_folder(record_dir):
    """Why the records' folder (or its parent) cannot be trusted, or ''. Only the module's user (root) may be able to
    change a record: one planted by another user would make a role skip its work. Where they lead (a folder moved to
    another disk and linked) is what is checked."""
    record_dir = os.path.realpath(record_dir)
    for folder in (os.path.dirname(record_dir), record_dir):
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            return f"{folder} is not a folder"
        if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
            return f"{folder} is not root's alone (owner {_owner(st)}, mode {stat.S_IMODE(st.st_mode):04o})"
    return ""


def read_json(path):
    """A file's JSON, or None when it is absent, torn, not a file or not JSON."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def read_record(path):
    """A record, or None (no record of a complete run)."""
    record = read_json(path)
    return record if isinstance(record, dict) else None


def write_record(path, record):
    """Atomically, root's only: a record cut short by a crash must never be read as a complete one."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".drift-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
