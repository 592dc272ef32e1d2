"""Comfy Registry metadata and the install requirements."""

from __future__ import annotations

import tomllib

from node_helpers import REPO


def test_the_registry_fields_are_filled():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    comfy, project = data["tool"]["comfy"], data["project"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"].startswith("https://")
    assert comfy["Icon"].endswith("/assets/icon.svg") and (REPO / "assets" / "icon.svg").is_file()
    assert comfy["requires-comfyui"].startswith(">=")
    assert any(c.startswith("Operating System :: ") for c in project["classifiers"])
    assert any(c.startswith("Environment :: GPU :: ") for c in project["classifiers"])
    assert {"Repository", "Issues", "Documentation"} <= set(project["urls"])


def test_requirements_match_the_dependencies_and_never_pin_torch():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    lines = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert requirements == data["project"]["dependencies"]
    assert not any(r.split(">")[0].split("=")[0].strip() in ("torch", "torchvision", "torchaudio") for r in requirements)
