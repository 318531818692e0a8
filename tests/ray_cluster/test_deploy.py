"""The cluster files of ray_cluster/deploy/: the launcher YAML against the schema Ray ships, the
KubeRay manifests' required fields, and every version in them against constraints.txt. They are
not exercised against a real cluster here (these machines have neither a cloud nor Kubernetes)."""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from ..helpers import ROOT

DEPLOY = ROOT / "ray_cluster" / "deploy"
PINS = dict(
    re.match(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line).groups()  # type: ignore[union-attr]
    for line in (ROOT / "constraints.txt").read_text().splitlines()
    if re.match(r"[A-Za-z0-9_.\-]+==", line)
)
RAY_IMAGE = f"rayproject/ray:{PINS['ray']}-py311-gpu"
OUR_IMAGE_TAG = f"ray{PINS['ray']}-py311"


def _load(name):
    return yaml.safe_load((DEPLOY / name).read_text())


def _pins(text):
    return dict(re.findall(r"([A-Za-z0-9_.\-]+)==([0-9][^\s\"']*)", text))


def test_the_launcher_yaml_is_valid_for_the_schema_ray_ships():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    cfg = _load("cluster.yaml")
    jsonschema.validate(cfg, schema)  # raises with the path of the first field it refuses
    nodes = cfg["available_node_types"]
    assert nodes[cfg["head_node_type"]]["resources"] == {"CPU": 0}  # no trial on the head
    assert any(n["resources"].get("GPU", 0) >= 1 for n in nodes.values())
    assert cfg["docker"]["image"] == RAY_IMAGE
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]


def test_the_schema_check_refuses_a_broken_launcher_yaml():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    cfg = _load("cluster.yaml")
    cfg["available_node_types"]["gpu"]["resources"] = {"GPU": 0.5}  # the launcher wants integers
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, schema)


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_the_kuberay_manifests_have_their_required_fields_and_our_versions(name):
    doc = _load(name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["metadata"]["name"]
    if doc["kind"] == "RayJob":
        entrypoint = doc["spec"]["entrypoint"]
        assert entrypoint.startswith("allocator optimize") and "--ray-address auto" in entrypoint
        yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
        spec = doc["spec"]["rayClusterSpec"]
    else:
        assert doc["kind"] == "RayCluster"
        spec = doc["spec"]
    assert spec["rayVersion"] == PINS["ray"]
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    groups = [head, *spec["workerGroupSpecs"]]
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert "rayStartParams" in group
    gpus = 0
    for group in groups:
        (container, *_) = group["template"]["spec"]["containers"]
        assert container["name"] and container["image"].endswith(":" + OUR_IMAGE_TAG)
        gpus += int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
    assert gpus >= 1


def test_every_version_in_the_cluster_files_is_the_projects_pin():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM (\S+)$", dockerfile, re.M).group(1) == RAY_IMAGE  # type: ignore[union-attr]
    assert "-c /home/ray/allocator/constraints.txt" in dockerfile
    launcher = (DEPLOY / "cluster.yaml").read_text()
    pinned = _pins(launcher)
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "optuna", "mlflow", "datasets"):
        assert pinned.get(pkg) == PINS[pkg], pkg
    for name in ("cluster.yaml", "Dockerfile", "raycluster.yaml", "rayjob.yaml"):
        for pkg, version in _pins((DEPLOY / name).read_text()).items():
            assert PINS.get(pkg) == version, f"{name}: {pkg}=={version}, constraints.txt has {PINS.get(pkg)}"
        for version in re.findall(r"ray:?(\d+\.\d+\.\d+)", (DEPLOY / name).read_text()):
            assert version == PINS["ray"], name
