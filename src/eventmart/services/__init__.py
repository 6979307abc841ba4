"""The shop's services. Each folder is one bounded context with its own database; a service
imports the platform, the contracts and itself, never another service."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventmart.platform.infra import Platform
    from eventmart.platform.runtime import Service

# name -> port offset from Settings.port_base; also the start order of `eventmart up`.
SERVICE_INDEX: dict[str, int] = {
    "identity": 1,
    "catalog": 2,
    "inventory": 3,
    "basket": 4,
    "ordering": 5,
    "payment": 6,
    "shipping": 7,
    "notification": 8,
    "readside": 9,
}

_MODULES = {name: f"eventmart.services.{name}.service" for name in SERVICE_INDEX}
_MODULES["readside"] = "eventmart.readside.service"


def build_service(name: str, platform: Platform) -> Service:
    """Compose one service for this process (its composition root)."""
    if name not in _MODULES:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICE_INDEX)}")
    module = importlib.import_module(_MODULES[name])
    service: Service = module.build(platform)
    return service
