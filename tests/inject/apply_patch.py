"""Apply an admission webhook's JSONPatch with Python's `jsonpatch` (an RFC 6902
implementation nobody on this project wrote) and compare with the expected pod.

usage: apply_patch.py REVIEW.json RESPONSE.json EXPECTED.yaml
Exit 0 when the patched pod equals the expected one; otherwise print the difference.
"""
import base64
import json
import sys

try:
    import jsonpatch
    import yaml
except ImportError as missing:
    sys.exit(f"missing Python module: {missing.name} (pip install jsonpatch PyYAML; scripts/test.sh installs them)")

review_path, response_path, expected_path = sys.argv[1:4]
with open(review_path) as f:
    pod = json.load(f)["request"]["object"]
with open(response_path) as f:
    response = json.load(f)["response"]


class KubeLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it (sigs.k8s.io/yaml): a timestamp-like scalar stays a string."""


KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

with open(expected_path) as f:
    expected = yaml.load(f, Loader=KubeLoader)

if response.get("patchType") != "JSONPatch":
    sys.exit(f"patchType is {response.get('patchType')!r}, not JSONPatch")
operations = json.loads(base64.b64decode(response["patch"]))
patched = jsonpatch.JsonPatch(operations).apply(pod)
if patched != expected:
    print(json.dumps(jsonpatch.make_patch(expected, patched).patch, indent=1))
    sys.exit("the patched pod differs from the injected pod (above: expected -> patched)")
print(f"ok: {len(operations)} operations")
