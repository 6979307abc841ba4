"""The published language: every service's public events and commands.

Each module here holds one bounded context's messages. Their Avro schemas are exported to
`contracts/avro/` (one `.avsc` per subject) by `eventmart schemas export`.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from eventmart.platform.messages import Message

AVRO_DIR = Path(__file__).parent / "avro"


def all_message_types() -> list[type[Message]]:
    """Every concrete message class in the contracts package, sorted by type name."""
    found: dict[str, type[Message]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Message)
                and obj.is_concrete()
                and obj.__module__ == module.__name__
            ):
                found[obj.type_name()] = obj
    return [found[k] for k in sorted(found)]
