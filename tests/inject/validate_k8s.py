"""Validate injected manifests against the Kubernetes OpenAPI schemas, strictly (no unknown
fields), with `kubernetes-validate`, the validator tests/install/validate.py uses.

usage: validate_k8s.py K8S_VERSION MANIFEST.yaml...
Exits 1 with every failure listed.
"""
import sys

try:
    import kubernetes_validate
    import yaml
except ImportError as missing:
    sys.exit(f"missing Python module: {missing.name} "
             "(pip install kubernetes-validate PyYAML; scripts/test.sh installs them)")


class KubeLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it (sigs.k8s.io/yaml): a timestamp-like scalar stays a string."""


KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def main():
    version, paths = sys.argv[1], sys.argv[2:]
    failures = []
    count = 0
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.load_all(f, Loader=KubeLoader) if d]
        # A v1 List has no schema of its own: its items are checked instead.
        docs = [i for d in docs for i in (d.get("items", []) if d.get("kind") == "List" else [d])]
        for doc in docs:
            if doc.get("kind") == "Widget":
                continue  # kinds.yaml's unknown kind, copied through untouched on purpose
            count += 1
            name = f"{path}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures.append(f"{name}: {e.message} at {'.'.join(map(str, e.path))}")
            except (kubernetes_validate.SchemaNotFoundError,
                    kubernetes_validate.InvalidSchemaError) as e:
                failures.append(f"{name}: no Kubernetes schema: {e}")
    for failure in failures:
        print("FAIL", failure)
    print(f"{count} documents against Kubernetes {version}; {len(failures)} failures")
    sys.exit(1 if failures or count == 0 else 0)


main()
