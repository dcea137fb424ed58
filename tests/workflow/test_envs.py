"""The conda env files and pyproject.toml agree: every runtime dependency is pinned, in range."""

from __future__ import annotations

import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.workflow.conftest import ROOT


def _pyproject_requirements(extras: tuple[str, ...]) -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in data["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in data["optional-dependencies"][extra]]
    return {canonicalize_name(r.name): r for r in reqs if not r.name.startswith("imagedepot")}


def _env_pins(name: str) -> dict[str, str]:
    env = yaml.safe_load((ROOT / "envs" / name).read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = {}
    for line in pip:
        if line.startswith("-e"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{name}: {line} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_rule_env_pins_every_runtime_dependency_within_pyproject_ranges() -> None:
    reqs = _pyproject_requirements(("bioformats",))
    pins = _env_pins("imagedepot.yaml")
    missing = sorted(set(reqs) - set(pins))
    assert not missing, f"envs/imagedepot.yaml lacks pins for {missing}"
    for name, req in reqs.items():
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"envs/imagedepot.yaml pins {name}=={pins[name]}, outside pyproject's {req.specifier}"
        )
