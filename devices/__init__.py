"""Boards and their sensors: profiles, detection, power / thermal / CPU readings."""

from __future__ import annotations

import os

from edgekit.devices.boards import BoardProfile, detect, profiles
from edgekit.devices.sensors import SENSORS, SensorContext, context


def read_sensors(root: str | os.PathLike = "/", vcgencmd: str | None = None) -> dict:
    """Every sensor that answers, merged: watts (with its source, or ``estimated``),
    temp_c, throttling flags, cpu_mhz. A sensor that cannot be read is skipped, never fatal."""
    ctx = context(root, vcgencmd)
    readings: dict = {}
    for name, reader in SENSORS.items():
        try:
            value = reader(ctx)
        except Exception:  # a broken sensor file must not take the agent down
            value = None
        if value:
            readings[name] = value
    return readings


__all__ = ["BoardProfile", "SENSORS", "SensorContext", "detect", "profiles", "read_sensors"]
