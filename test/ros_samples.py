"""Randomly filled ROS messages for transport tests: every field, nested and sequence, gets a
value drawn from a seeded generator, so two processes build identical samples from one seed."""

from __future__ import annotations

import importlib
import random
from pathlib import Path

import numpy as np
from ament_index_python.packages import get_package_share_directory
from rosidl_parser.definition import (
    AbstractGenericString,
    AbstractNestedType,
    BasicType,
    NamespacedType,
)

INTEGER_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64, "uint8": 8, "uint16": 16, "uint32": 32,
                "uint64": 64, "octet": 8, "char": 8}


def interface_types(package: str) -> list[type]:
    """Every message class that `package` installs (from its share/<package>/msg/*.msg files)."""
    share = Path(get_package_share_directory(package))
    module = importlib.import_module(f"{package}.msg")
    return [getattr(module, path.stem) for path in sorted(share.glob("msg/*.msg"))]


def _random_integer(typename: str, rng: random.Random) -> int:
    bits = INTEGER_BITS[typename]
    low, high = (0, 2**bits - 1) if typename.startswith("u") or typename in ("octet", "char") else (
        -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return rng.choice([low, high, rng.randint(low, high)])


def random_value(slot_type, rng: random.Random):
    if isinstance(slot_type, BasicType):
        name = slot_type.typename
        if name == "boolean":
            return rng.random() < 0.5
        if name == "float":  # float32 on the wire: draw values it represents exactly
            return float(np.float32(rng.uniform(-1e6, 1e6)))
        if name in ("double", "long double"):
            return rng.uniform(-1e12, 1e12)
        return _random_integer(name, rng)
    if isinstance(slot_type, AbstractGenericString):
        return "".join(rng.choice("abcXYZ_019 /-é") for _ in range(rng.randint(0, 24)))
    if isinstance(slot_type, NamespacedType):
        module = importlib.import_module(".".join(slot_type.namespaces))
        return random_message(getattr(module, slot_type.name), rng)
    if isinstance(slot_type, AbstractNestedType):
        element = slot_type.value_type
        size = getattr(slot_type, "size", None)
        if size is None:  # sequences: sometimes empty; byte buffers can be long (image data)
            bytes_like = isinstance(element, BasicType) and element.typename in ("uint8", "octet")
            size = rng.choice([0, rng.randint(1, 900 if bytes_like else 4)])
            if getattr(slot_type, "maximum_size", None) is not None:
                size = min(size, slot_type.maximum_size)
        return [random_value(element, rng) for _ in range(size)]
    raise TypeError(f"no sampler for {slot_type!r}")


def random_message(message_type: type, rng: random.Random):
    message = message_type()
    for field, slot_type in zip(message_type.get_fields_and_field_types(), message_type.SLOT_TYPES, strict=True):
        value = random_value(slot_type, rng)
        if isinstance(value, list) and isinstance(getattr(message, field), bytes):
            value = bytes(value)
        setattr(message, field, value)
    return message


def samples(message_type: type, seed: int, count: int) -> list:
    rng = random.Random(f"{seed}/{message_type.__module__}.{message_type.__name__}")
    return [random_message(message_type, rng) for _ in range(count)]


def topic_for(message_type: type, prefix: str) -> str:
    return f"{prefix}/{message_type.__name__}"
