"""Copy broker/mosquitto.conf, broker/acl and broker/build-passwd.sh into deploy/k8s/broker.yaml.

The ConfigMap holds verbatim copies (kustomize cannot read files outside its folder), and
tests/deploy/test_k8s_manifests.py fails when they differ. Run after editing those files:

    python deploy/k8s/sync-broker-config.py
"""

# ruff: noqa: INP001 - a script of deploy/, not a package

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "k8s" / "broker.yaml"
FILES = {"mosquitto.conf": "mosquitto.conf", "acl": "acl", "build-passwd.sh": "build-passwd.sh"}


def block(key: str, text: str) -> str:
    body = "\n".join(f"    {line}" if line else "" for line in text.splitlines())
    return f"  {key}: |\n{body}\n"


def main() -> None:
    manifest = MANIFEST.read_text()
    head, sep, rest = manifest.partition("\n---\n")
    match = re.search(r"^data:\n", head, re.MULTILINE)
    assert match, "the first document of broker.yaml must be the ConfigMap with a data: block"
    data = "".join(block(key, (ROOT / "broker" / name).read_text()) for key, name in FILES.items())
    MANIFEST.write_text(head[: match.end()] + data.rstrip("\n") + sep + rest)


if __name__ == "__main__":
    main()
