"""Declare node parameters from one table, each with a descriptor and range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    value_range: Optional[Tuple[float, float]] = None
    read_only: bool = True  # False: may be changed at run time (ros2 param set)


def declare_parameters(node: Any, specs: Sequence[ParamSpec]) -> Dict[str, Any]:
    """Declare every parameter and return the current values by name."""
    values = {}
    for spec in specs:
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
        if spec.value_range is not None:
            low, high = spec.value_range
            if isinstance(spec.default, bool):
                pass
            elif isinstance(spec.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
            elif isinstance(spec.default, float):
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        values[spec.name] = node.declare_parameter(spec.name, spec.default, descriptor).value
    return values
