"""Checks rendered manifests for closed internals, which schemas cannot: every oneword workload
reads the service token from its Secret, and every internal service has a NetworkPolicy that
admits only its callers' pods on the gRPC port and someone (the scraper) on the metrics port.

Usage: check.py RENDERED.yaml... (make deploy-check runs it on every rendering)
"""

import sys

import yaml

SECRET = "oneword-service-token"
# The pods that may call each internal service's gRPC port (by app.kubernetes.io/name).
CALLERS = {
    "tokenizer": {"oneword-gateway"},
    "embedder": {"oneword-gateway", "oneword-index"},
    "decoder": {"oneword-gateway"},
    "baseline": {"oneword-gateway"},
    "index": {"oneword-gateway"},
}


def token_problem(workload, role):
    variable = f"ONEWORD_{role.upper()}_SERVICE_TOKEN"
    for container in workload["spec"]["template"]["spec"]["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef", {})
            if env["name"] == variable and ref.get("name") == SECRET and ref.get("key") == "token":
                # An optional reference would start the service open when the Secret is missing.
                return "its token Secret is optional" if ref.get("optional") else None
    return f"no {variable} from the Secret {SECRET} (key token)"


def callers_of(rule):
    """The pod names a rule admits; None when it admits more than named pods of this namespace."""
    names = set()
    for source in rule.get("from") or [None]:  # no `from` = every source
        selector = (source or {}).get("podSelector", {})
        name = selector.get("matchLabels", {}).get("app.kubernetes.io/name")
        if set(source or {}) != {"podSelector"} or "matchExpressions" in selector or not name:
            return None
        names.add(name)
    return names


def policy_problems(workload, role, policies):
    template = workload["spec"]["template"]
    labels = template["metadata"]["labels"].items()
    ports = {
        port["name"]: port["containerPort"]
        for container in template["spec"]["containers"]
        for port in container.get("ports", [])
    }
    selecting = [
        p
        for p in policies
        if (selector := p["spec"]["podSelector"].get("matchLabels")) and selector.items() <= labels
    ]
    if not selecting:
        return ["no NetworkPolicy selects its pods"]
    problems, admitted, metrics = [], set(), False
    for policy in selecting:
        if "Ingress" not in policy["spec"].get("policyTypes", []):
            problems.append(f"NetworkPolicy {policy['metadata']['name']} does not restrict ingress")
        for rule in policy["spec"].get("ingress", []):
            opened = {p.get("port") for p in rule.get("ports", [])} or {"grpc", "metrics"}
            metrics |= bool(opened & {"metrics", ports.get("metrics")})
            if opened & {"grpc", ports.get("grpc")}:
                names = callers_of(rule)
                if names is None:
                    name = policy["metadata"]["name"]
                    problems.append(f"NetworkPolicy {name} opens the gRPC port beyond named pods")
                else:
                    admitted |= names
    if admitted != CALLERS[role]:
        problems.append(f"its gRPC port admits {sorted(admitted)}, not {sorted(CALLERS[role])}")
    if not metrics:
        problems.append("its metrics port is closed to the scraper")
    return problems


def check(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    problems, seen = [], set()
    for workload in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet")):
        role = workload["metadata"].get("labels", {}).get("app.kubernetes.io/component", "?")
        seen.add(role)
        found = [token_problem(workload, role)]
        if role in CALLERS:
            found += policy_problems(workload, role, policies)
        name = f"{workload['kind']} {workload['metadata']['name']}"
        problems += [f"{path}: {name}: {p}" for p in found if p]
    problems += [f"{path}: no workload for the {role}" for role in sorted(set(CALLERS) - seen)]
    return problems


if __name__ == "__main__":
    problems = [p for path in sys.argv[1:] for p in check(path)]
    print("\n".join(problems) or f"closed internals: {len(sys.argv) - 1} renderings checked")
    sys.exit(1 if problems else 0)
