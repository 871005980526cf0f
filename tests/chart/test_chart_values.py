"""values.yaml documents every key, and values.schema.json rejects what the chart cannot
use: wrong types, unknown (misspelt) keys, values out of range. Helm applies the schema
itself on install, render and lint; the tests check both Helm and plain jsonschema."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
import yaml
from chart_support import CHART_DIR, HelmError, Manifests, lint

from sidecar.lab.cluster.release import deep_merge

VALUES = CHART_DIR / "values.yaml"
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())

# Values the schema must reject, each with the words Helm's message must contain.
BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown top-level key": ({"replicas": 3}, "additional properties 'replicas'"),
    "misspelt nested key": ({"zookeeper": {"replica": 3}}, "additional properties 'replica'"),
    "replicas as a string": ({"app": {"replicas": "3"}}, "/app/replicas"),
    "zero replicas": ({"app": {"replicas": 0}}, "/app/replicas"),
    "fractional servers": ({"zookeeper": {"replicas": 2.5}}, "/zookeeper/replicas"),
    "native as a string": ({"sidecar": {"native": "yes"}}, "/sidecar/native"),
    "unquoted numeric tag": ({"zookeeper": {"image": {"tag": 3.9}}}, "/zookeeper/image/tag"),
    "port out of range": ({"sidecar": {"httpPort": 70000}}, "/sidecar/httpPort"),
    "session timeout too long": (
        {"election": {"sessionTimeoutSeconds": 601}},
        "/election/sessionTimeoutSeconds",
    ),
    "election name with capitals": ({"election": {"name": "Demo"}}, "/election/name"),
    "role label with spaces": ({"election": {"roleLabel": "my role"}}, "/election/roleLabel"),
    "unknown anti-affinity": ({"zookeeper": {"antiAffinity": "strict"}}, "antiAffinity"),
    "unknown pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "credentials without password": (
        {"zkAuth": {"enabled": True, "credentials": "sidecar"}},
        "/zkAuth/credentials",
    ),
    "root user": ({"app": {"runAsUser": 0}}, "/app/runAsUser"),
    "resources with an unknown section": (
        {"sidecar": {"resources": {"request": {"cpu": "1"}}}},
        "additional properties 'request'",
    ),
    "env not a list": ({"app": {"env": {"A": "b"}}}, "/app/env"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_helm_rejects_bad_values(case: str, render: Callable[..., Manifests]) -> None:
    values, words = BAD_VALUES[case]
    with pytest.raises(HelmError) as error:
        render(values)
    assert words in str(error.value)


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_json_schema_rejects_bad_values(case: str) -> None:
    values, _ = BAD_VALUES[case]
    merged = deep_merge(yaml.safe_load(VALUES.read_text()), values)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merged, SCHEMA)


def test_lint_reports_bad_values_as_errors() -> None:
    passed, report = lint({"zookeeper": {"replica": 3}})
    assert not passed and "[ERROR]" in report, report
    assert "additional properties 'replica'" in report, report


def test_defaults_and_documented_overrides_pass_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    defaults = yaml.safe_load(VALUES.read_text())
    jsonschema.validate(defaults, SCHEMA)
    jsonschema.validate(
        deep_merge(defaults, {"election": {"roleLabel": "example.com/role"}}), SCHEMA
    )


def test_schema_and_values_have_the_same_keys() -> None:
    # A key in values.yaml the schema does not know would be rejected; a schema key with
    # no default is undocumented.
    assert set(key_paths(yaml.safe_load(VALUES.read_text()))) == set(schema_paths(SCHEMA))


def test_every_key_in_values_yaml_has_a_comment() -> None:
    lines = VALUES.read_text().splitlines()
    undocumented = []
    parents: list[tuple[int, str]] = []  # (indent, key) of the enclosing keys
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        parents = [(i, k) for i, k in parents if i < indent]
        ancestors = [".".join(k for _, k in parents[: n + 1]) for n in range(len(parents))]
        parents.append((indent, match.group(2)))
        if any(is_free_form(path) for path in ancestors):
            continue  # inside a Kubernetes object (probe, resources): documented upstream
        above = lines[number - 1].strip() if number else ""
        if not above.startswith("#") and "#" not in line:
            undocumented.append(f"values.yaml:{number + 1}: {match.group(2)}")
    assert not undocumented, "\n".join(undocumented)


def key_paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the chart's own keys; free-form Kubernetes objects are leaves."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and value and not is_free_form(path):
            yield from key_paths(value, path + ".")


def schema_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        yield path
        if "properties" in sub and not is_free_form(path):
            yield from schema_paths(sub, path + ".")


def is_free_form(path: str) -> bool:
    """Keys whose content is a Kubernetes type (probes, resource quantities, a label
    selector), not ours."""
    return path.endswith(("Probe", "requests", "limits", "Selector"))


