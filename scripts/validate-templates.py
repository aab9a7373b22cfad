#!/usr/bin/env python3
"""Validates Kubernetes objects strictly with kubernetes-validate, including the objects inside
OpenShift Templates after their parameters are substituted (defaults, or a sample value for
parameters without one). A "couldn't find schema" warning fails, except for the OpenShift-only
kinds listed below, which kubernetes-validate has no schema for.

Usage: validate-templates.py FILE...   (plain manifests and templates alike)
"""
import re
import subprocess
import sys
import tempfile

import yaml

OPENSHIFT_ONLY = {"BuildConfig", "ImageStream", "DeploymentConfig", "Route", "Template"}
VALIDATOR = "kubernetes-validate"


def substitute(node, params):
    """OpenShift's semantics: ${NAME} inside a string value is replaced and the value stays a
    string; a value that is exactly ${{NAME}} becomes the parameter parsed as YAML (a number,
    a boolean)."""
    def value(name):
        if name not in params:
            raise SystemExit(f"unknown template parameter {name}")
        return params[name]
    if isinstance(node, dict):
        return {substitute(k, params): substitute(v, params) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, params) for v in node]
    if isinstance(node, str):
        whole = re.fullmatch(r"\$\{\{(\w+)\}\}", node)
        if whole:
            return yaml.safe_load(value(whole.group(1)))
        return re.sub(r"\$\{(\w+)\}", lambda m: value(m.group(1)), node)
    return node


def objects_of(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    out = []
    for doc in docs:
        if doc.get("kind") != "Template":
            out.append(doc)
            continue
        params = {}
        for p in doc.get("parameters", []):
            value = p.get("value")
            if value is None or value == "":
                value = "sample-value" if p.get("required") else ""
            params[p["name"]] = str(value)
        out.extend(substitute(doc.get("objects", []), params))
    return out


def main(paths):
    failed = False
    for path in paths:
        for obj in objects_of(path):
            kind = obj.get("kind")
            name = obj.get("metadata", {}).get("name")
            if kind in OPENSHIFT_ONLY:
                print(f"{path}: {kind}/{name}: OpenShift-only kind, not validated")
                continue
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as tmp:
                yaml.safe_dump(obj, tmp)
                tmp.flush()
                res = subprocess.run([VALIDATOR, "--strict", tmp.name], capture_output=True, text=True)
            output = (res.stdout + res.stderr).strip()
            if res.returncode != 0 or "Couldn't find schema" in output or "ERROR" in output:
                print(f"{path}: {kind}/{name}: INVALID\n{output}")
                failed = True
            else:
                print(f"{path}: {kind}/{name}: valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
