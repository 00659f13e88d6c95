"""The built-in scenarios, if this install has them (gilviz/scenarios.py), else none."""

from __future__ import annotations

from typing import Any


def module() -> Any | None:
    try:
        from .. import scenarios
    except ImportError:
        return None
    if not hasattr(scenarios, "SCENARIOS"):
        return None
    return scenarios


def all_scenarios() -> list[Any]:
    mod = module()
    return list(mod.SCENARIOS.values()) if mod is not None else []


def default_name() -> str | None:
    mod = module()
    if mod is None:
        return None
    name = getattr(mod, "DEFAULT_SCENARIO", None)
    if name:
        return name
    return next(iter(mod.SCENARIOS), None)


def find(name: str | None) -> Any | None:
    mod = module()
    if mod is None or not name:
        return None
    return mod.SCENARIOS.get(name)


def text_of(scenario: Any, attribute: str) -> str:
    value = getattr(scenario, attribute, "") or ""
    return " ".join(str(value).split())
