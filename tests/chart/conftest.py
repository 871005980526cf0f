"""Fixtures for the deployment tests: the chart rendered by the real `helm` binary (built
with the local control plane from tools/cluster), once per values combination.

Rendering is cached for the whole session: every test asks `render(values)` and the chart
is rendered once per distinct set of values, which keeps the suite to a few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from chart_support import (
    COMBINATIONS,
    NEWEST,
    Manifests,
    parse_manifests,
    render_for_cluster,
)

RenderRaw = Callable[..., dict[str, str]]


@pytest.fixture(scope="session")
def render_raw() -> RenderRaw:
    """Render with Helm's engine for a cluster of `kube_version`, cached; raises Helm's errors."""
    cache: dict[str, dict[str, str]] = {}

    def render(values: dict[str, Any], kube_version: str = NEWEST) -> dict[str, str]:
        key = json.dumps([values, kube_version], sort_keys=True)
        if key not in cache:
            cache[key] = render_for_cluster(values, kube_version)
        return cache[key]

    return render


@pytest.fixture(scope="session")
def render(render_raw: RenderRaw) -> Callable[..., Manifests]:
    def parsed(values: dict[str, Any], kube_version: str = NEWEST) -> Manifests:
        objects = parse_manifests(render_raw(values, kube_version))
        return Manifests(values=values, objects=objects)

    return parsed


@pytest.fixture(scope="session")
def default(render: Callable[[dict[str, Any]], Manifests]) -> Manifests:
    return render({})


@pytest.fixture(params=sorted(COMBINATIONS), scope="session")
def combination(request: pytest.FixtureRequest, render: Callable[..., Manifests]) -> Manifests:
    """Each values combination in turn (tests using it run once per combination)."""
    return render(COMBINATIONS[request.param])
