"""Validate Trellis's install manifests with validators from the package registries.

usage: validate.py K8S_VERSION ISTIO_CRDS.yaml MANIFEST.yaml... -- ISTIO_RESOURCE.yaml...

1. Every manifest document validates, strictly (no unknown fields), against the Kubernetes
   OpenAPI schemas bundled by `kubernetes-validate` for K8S_VERSION.
2. Every Istio resource validates against Istio's own CRD schema for its group, version and
   kind (ISTIO_CRDS.yaml) and against the schema of the CRD Trellis generated, both read as
   JSON Schema with `jsonschema` (OpenAPI's `nullable` and Kubernetes' `x-kubernetes-*`
   markers translated).
3. Resources made invalid on purpose are rejected by Trellis's schemas.
Exits 1 with every failure listed.
"""
import copy
import sys

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as missing:
    sys.exit(f"missing Python module: {missing.name} "
             "(pip install kubernetes-validate jsonschema PyYAML; scripts/test.sh installs them)")


def documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def as_json_schema(node):
    """OpenAPI v3 (Kubernetes flavour) to JSON Schema."""
    if isinstance(node, list):
        return [as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def crd_schemas(crds):
    schemas = {}
    for crd in crds:
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            schemas[key] = as_json_schema(version["schema"]["openAPIV3Schema"])
    return schemas


def check(schema, resource):
    body = {k: v for k, v in resource.items() if k in ("spec", "status")}
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=str)
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]


def main():
    args = sys.argv[1:]
    split = args.index("--")
    version, istio_crds_path, manifests, resources = args[0], args[1], args[2:split], args[split + 1:]
    failures = []
    ours = {}
    manifest_count = 0
    for path in manifests:
        docs = documents(path)
        ours.update(crd_schemas(docs))
        for doc in docs:
            manifest_count += 1
            name = f"{path}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures.append(f"{name}: {e.message} at {'.'.join(map(str, e.path))}")
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                failures.append(f"{name}: no Kubernetes schema: {e}")
    if not ours:
        failures.append("no CustomResourceDefinition among the manifests")
    istio = crd_schemas(documents(istio_crds_path))
    checked = 0
    samples = []
    for path in resources:
        for resource in documents(path):
            key = (resource.get("apiVersion"), resource.get("kind"))
            name = f"{path}: {key[1]} {resource.get('metadata', {}).get('name')}"
            if key not in istio:
                continue
            if key not in ours:
                failures.append(f"{name}: Trellis has no CRD for {key}")
                continue
            for label, schema in (("Istio's", istio[key]), ("Trellis's", ours[key])):
                for error in check(schema, resource):
                    failures.append(f"{name}: {label} schema refuses it: {error}")
            checked += 1
            samples.append(resource)
    # Mistakes a schema must catch.
    broken = 0
    for resource in samples:
        if resource["kind"] == "VirtualService" and resource["spec"].get("http"):
            bad = copy.deepcopy(resource)
            bad["spec"]["http"] = "not a list"
            worse = copy.deepcopy(resource)
            worse["spec"]["http"][0].setdefault("route", [{"destination": {"host": "x"}}])
            worse["spec"]["http"][0]["route"][0]["weight"] = "heavy"
            for case in (bad, worse):
                broken += 1
                if not check(ours[(case["apiVersion"], case["kind"])], case):
                    failures.append(f"Trellis's schema accepts a broken VirtualService: {case['spec']}")
        if resource["kind"] == "PeerAuthentication":
            bad = copy.deepcopy(resource)
            bad["spec"]["mtls"] = {"mode": "SOMETIMES"}
            broken += 1
            if not check(ours[(bad["apiVersion"], bad["kind"])], bad):
                failures.append("Trellis's schema accepts mtls.mode SOMETIMES")
    if checked == 0 or broken == 0:
        failures.append(f"nothing was checked ({checked} resources, {broken} broken ones)")
    for failure in failures:
        print("FAIL", failure)
    print(f"{manifest_count} manifest documents against Kubernetes {version}; "
          f"{checked} Istio resources against Istio's and Trellis's CRD schemas; "
          f"{broken} broken resources refused; {len(failures)} failures")
    sys.exit(1 if failures else 0)


main()
