"""Validates every Kubernetes manifest under deploy/kubernetes against Kubernetes' own
schemas (kubernetes-validate, strict: unknown fields are errors), checks that each
kustomization refers only to files that exist, and that the ConfigMap source is the
project's config/coldsend.toml. Prints one line per checked document; exits 1 on any
problem."""
import pathlib
import sys

import kubernetes_validate
import yaml

VERSION = "1.30"
root = pathlib.Path(__file__).resolve().parents[2]
kube = root / "deploy" / "kubernetes"
problems = []
checked = 0

for kfile in sorted(kube.rglob("kustomization.yaml")):
    k = yaml.safe_load(kfile.read_text())
    for ref in k.get("resources", []):
        target = kfile.parent / ref
        if not target.exists():
            problems.append(f"{kfile}: resource {ref} does not exist")
    for gen in k.get("configMapGenerator", []):
        for f in gen.get("files", []):
            if not (kfile.parent / f.split("=")[-1]).exists():
                problems.append(f"{kfile}: configMapGenerator file {f} does not exist")
    for patch in k.get("patches", []):
        target = patch.get("target", {})
        if not target.get("kind") or not target.get("name"):
            problems.append(f"{kfile}: a patch without a target kind and name")

for path in sorted(kube.rglob("*.yaml")):
    if path.name == "kustomization.yaml":
        continue
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        try:
            kubernetes_validate.validate(doc, VERSION, strict=True)
            checked += 1
            print(f"ok  {path.relative_to(root)}  {doc['kind']}/{doc['metadata']['name']}")
        except (kubernetes_validate.ValidationError, kubernetes_validate.InvalidSchemaError) as e:
            problems.append(f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {e}")

if (kube / "base" / "coldsend.toml").read_text() != (root / "config" / "coldsend.toml").read_text():
    problems.append("deploy/kubernetes/base/coldsend.toml differs from config/coldsend.toml (copy it over)")

for p in problems:
    print("FAIL " + p)
print(f"{checked} manifests valid against Kubernetes {VERSION}, {len(problems)} problems")
sys.exit(1 if problems or checked == 0 else 0)
