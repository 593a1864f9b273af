"""Validates deploy/kubernetes offline (`cargo xtask k8s-validate`).

1. Every manifest (each YAML document under deploy/kubernetes but
   examples/ and kustomization.yaml) against the schemas of Kubernetes
   KUBERNETES_VERSION, strictly (an unknown field is an error), with
   kubernetes-validate.
2. kustomization.yaml lists exactly those manifests: none is left out of
   `kubectl apply -k`, none listed is missing.
3. Every custom resource under deploy/kubernetes/examples against the
   openAPIV3Schema of its CRD in deploy/kubernetes/crds, with jsonschema.
4. Every overlay (a folder with a kustomization.yaml whose resources are
   `..`): its JSON 6902 patches apply to the base (each target found once,
   each `test` op true), and what they make validates as in 1.

Usage: python validate.py [DIR]   (default: deploy/kubernetes)
Prints one line per failure and exits 1 when there is any.
"""

import copy
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# The Kubernetes version of k8s-openapi's feature in host/k8s/Cargo.toml.
KUBERNETES_VERSION = "1.34.0"


def documents(path):
    with open(path, encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def manifest_files(root):
    return sorted(
        path
        for path in root.rglob("*.yaml")
        if path.name != "kustomization.yaml" and "examples" not in path.relative_to(root).parts
    )


class PatchError(Exception):
    pass


def json_pointer(path):
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def apply_operation(doc, op):
    """One JSON Patch (RFC 6902) operation: add, remove, replace or test."""
    *parents, last = json_pointer(op["path"])
    target = doc
    try:
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
    except (KeyError, IndexError, ValueError) as err:
        raise PatchError(f"{op['path']}: no such parent ({err})") from err
    if isinstance(target, list):
        key = len(target) if last == "-" else int(last)
        exists = key < len(target)
    else:
        key = last
        exists = key in target
    kind = op["op"]
    if kind in ("replace", "remove", "test") and not exists:
        raise PatchError(f"{kind} {op['path']}: nothing there")
    if kind == "test" and target[key] != op["value"]:
        raise PatchError(f"test {op['path']}: {target[key]!r} is not {op['value']!r}")
    if kind == "replace":
        target[key] = op["value"]
    elif kind == "remove":
        del target[key]
    elif kind == "add":
        if isinstance(target, list):
            target.insert(key, op["value"])
        else:
            target[key] = op["value"]
    elif kind != "test":
        raise PatchError(f"{kind}: not an operation this check applies")


def render_overlay(overlay, base_docs):
    """The base's documents with the overlay's patches applied; the names of
    the documents patched."""
    kustomization = documents(overlay / "kustomization.yaml")[0]
    if kustomization.get("resources") != [".."]:
        raise PatchError("an overlay here has exactly one resource, `..`")
    docs = copy.deepcopy(base_docs)
    patched = []
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matches = [
            doc
            for doc in docs
            if doc.get("kind") == target["kind"]
            and doc.get("metadata", {}).get("name") == target["name"]
        ]
        if len(matches) != 1:
            raise PatchError(f"{target['kind']} {target['name']}: {len(matches)} in the base, not 1")
        for op in yaml.safe_load(patch["patch"]):
            apply_operation(matches[0], op)
        patched.append(matches[0])
    return patched


def validate_manifest(doc, where, failures):
    name = f"{where}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        failures.append(f"{name}: {'.'.join(map(str, err.path))}: {err.message}")
    except kubernetes_validate.SchemaNotFoundError as err:
        failures.append(f"{name}: {err}")
    else:
        print(f"valid: {name}")


def json_schema(openapi):
    """A CRD's OpenAPI schema as JSON Schema, as strict as `kubectl apply`
    (strict field validation): `nullable: true` becomes the type or null,
    and an object with `properties` refuses other fields, unless it keeps
    unknown fields."""
    if isinstance(openapi, list):
        return [json_schema(item) for item in openapi]
    if not isinstance(openapi, dict):
        return openapi
    schema = {key: json_schema(value) for key, value in openapi.items() if key != "nullable"}
    if openapi.get("nullable") is True and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    return schema


def resource_schema(openapi):
    """The schema of a whole custom resource: the CRD's, with the fields
    Kubernetes adds to every object."""
    schema = json_schema(openapi)
    schema["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **schema.get("properties", {}),
    }
    return schema


def crd_schemas(root):
    """(apiVersion, kind) -> the JSON Schema of that version of the CRD."""
    schemas = {}
    for path in sorted((root / "crds").glob("*.yaml")):
        for crd in documents(path):
            spec = crd["spec"]
            for version in spec["versions"]:
                api_version = f"{spec['group']}/{version['name']}"
                openapi = version["schema"]["openAPIV3Schema"]
                schemas[(api_version, spec["names"]["kind"])] = resource_schema(openapi)
    return schemas


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/kubernetes")
    failures = []
    manifests = manifest_files(root)
    base_docs = []
    for path in manifests:
        for doc in documents(path):
            base_docs.append(doc)
            validate_manifest(doc, path, failures)

    for overlay in sorted(p.parent for p in root.glob("*/kustomization.yaml")):
        try:
            for doc in render_overlay(overlay, base_docs):
                validate_manifest(doc, overlay, failures)
        except PatchError as err:
            failures.append(f"{overlay}/kustomization.yaml: {err}")

    listed = documents(root / "kustomization.yaml")[0].get("resources", [])
    on_disk = {str(path.relative_to(root)) for path in manifests}
    for missing in sorted(on_disk - set(listed)):
        failures.append(f"{root}/kustomization.yaml: does not list {missing}")
    for absent in sorted(set(listed) - on_disk):
        failures.append(f"{root}/kustomization.yaml: lists {absent}, which is not there")

    schemas = crd_schemas(root)
    examples = sorted((root / "examples").glob("*.yaml"))
    if not examples:
        failures.append(f"{root}/examples: no example custom resources")
    for path in examples:
        for doc in documents(path):
            key = (doc.get("apiVersion"), doc.get("kind"))
            name = f"{path}: {key[1]} {doc.get('metadata', {}).get('name')}"
            schema = schemas.get(key)
            if schema is None:
                failures.append(f"{name}: no CRD in {root}/crds defines {key[0]} {key[1]}")
                continue
            errors = sorted(
                jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path)
            )
            for err in errors:
                failures.append(f"{name}: {'.'.join(map(str, err.path))}: {err.message}")
            if not errors:
                print(f"valid: {name}")

    for failure in failures:
        print(f"INVALID {failure}")
    if failures:
        print(f"{len(failures)} problem(s) in {root}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
