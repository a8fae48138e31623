"""docs/iam-policy.json read as data: which AWS actions it allows, for tests that hold the playbooks to it.

moto does not enforce IAM, so the AWS suite records every call the playbooks make (support/aws_proxy.py) and
checks each action against the policy's Allow statements. Conditions cannot be evaluated here; the policy's
own test (tests/unit/test_iam_policy.py) reads them.
"""

import fnmatch
import json

from standin import REPO

POLICY = REPO / "docs/iam-policy.json"
# Allowed to every caller whatever their policy says (AWS: "No permissions are required to perform this operation").
ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}


def statements(path=POLICY):
    return json.loads(path.read_text())["Statement"]


def _as_list(value):
    return value if isinstance(value, list) else [value]


def allows(action, path=POLICY):
    """True when an Allow statement of the policy names action ('ec2:RunInstances'), wildcards included."""
    if action in ALWAYS_ALLOWED:
        return True
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower())
               for s in statements(path) if s["Effect"] == "Allow" for pattern in _as_list(s.get("Action", [])))


def refused(calls, path=POLICY):
    """The (service, action) calls that the policy does not allow, as 'service:Action', sorted."""
    return sorted({f"{service}:{action}" for service, action in calls if not allows(f"{service}:{action}", path)})


def decide(action, resource, context, path=POLICY):
    """True when an Allow statement allows action on resource (an ARN) in this request context.

    A small evaluator for the policy's own vocabulary: Action and Resource with wildcards, and Condition with
    StringEquals on keys such as aws:RequestTag/K, aws:ResourceTag/K and ec2:CreateAction, where a value may be
    the policy variable ${aws:userid} (context["aws:userid"]), Null, and ForAllValues:StringEquals on a list
    key (aws:TagKeys). Any other operator is an error, so a policy that grows one cannot pass unread.
    """
    for statement in statements(path):
        if statement["Effect"] != "Allow" or "NotAction" in statement or "NotResource" in statement:
            raise ValueError(f"unsupported statement: {statement.get('Sid')}")
        if not any(fnmatch.fnmatchcase(action, a) for a in _as_list(statement["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _as_list(statement["Resource"])):
            continue
        if all(_holds(op, key, wanted, context) for op, tests in statement.get("Condition", {}).items()
               for key, wanted in tests.items()):
            return True
    return False


def _holds(operator, key, wanted, context):
    values = [str(w).replace("${aws:userid}", context["aws:userid"]) for w in _as_list(wanted)]
    if operator == "Null":  # "true": the key is absent from the request
        return (key not in context) == (values == ["true"])
    if operator == "ForAllValues:StringEquals":  # every value of a list key (aws:TagKeys) is among these
        return all(v in values for v in _as_list(context.get(key, [])))
    if operator != "StringEquals":
        raise ValueError(f"unsupported condition operator {operator}")
    return key in context and context[key] in values
