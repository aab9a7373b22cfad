#!/usr/bin/env python3
"""Validates Kubernetes objects strictly with kubernetes-validate, including the objects inside
OpenShift Templates after their parameters are substituted (defaults, or a sample value for
parameters without one). A "couldn't find schema" warning fails, except for the OpenShift-only
kinds listed below, which kubernetes-validate has no schema for.

DeploymentConfig (OpenShift-only) is checked against openshift/schemas/deploymentconfig.schema.json
(its spec's fields), its selector against its pod labels, and its pod template as a Kubernetes
PodTemplate by kubernetes-validate --strict.

Usage: validate-templates.py FILE...   (plain manifests and templates alike)
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

OPENSHIFT_ONLY = {"BuildConfig", "ImageStream", "Route", "Template"}
DC_SCHEMA = os.path.join(os.path.dirname(__file__), "..", "openshift", "schemas", "deploymentconfig.schema.json")
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


def kubernetes_validate(obj):
    """kubernetes-validate --strict on one object: (ok, output)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as tmp:
        yaml.safe_dump(obj, tmp)
        tmp.flush()
        res = subprocess.run([VALIDATOR, "--strict", tmp.name], capture_output=True, text=True)
    output = (res.stdout + res.stderr).strip()
    return res.returncode == 0 and "Couldn't find schema" not in output and "ERROR" not in output, output


def deployment_config(obj):
    """The schema in the repository, the selector against the pod labels, the pod template."""
    with open(DC_SCHEMA) as f:
        schema = json.load(f)
    try:
        jsonschema.validate(obj, schema)
    except jsonschema.ValidationError as e:
        return False, f"{e.message} at {'/'.join(str(p) for p in e.absolute_path)}"
    template = obj["spec"]["template"]
    labels = template.get("metadata", {}).get("labels", {})
    for key, value in obj["spec"].get("selector", {}).items():
        if labels.get(key) != value:
            return False, f"selector {key}={value} does not match the pod template's labels {labels}"
    pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": obj["metadata"]["name"]}, "template": template}
    return kubernetes_validate(pod)


def main(paths):
    failed = False
    for path in paths:
        for obj in objects_of(path):
            kind = obj.get("kind")
            name = obj.get("metadata", {}).get("name")
            if kind in OPENSHIFT_ONLY:
                print(f"{path}: {kind}/{name}: OpenShift-only kind, not validated")
                continue
            ok, output = deployment_config(obj) if kind == "DeploymentConfig" else kubernetes_validate(obj)
            if not ok:
                print(f"{path}: {kind}/{name}: INVALID\n{output}")
                failed = True
            else:
                print(f"{path}: {kind}/{name}: valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
