"""The sensor readers (registered in edgekit.devices.sensors.SENSORS)."""

from __future__ import annotations

import re

from edgekit.devices.sensors import SensorContext, sensor

POWER_CHIPS = ("ina219", "ina226", "ina260", "ina3221", "ina231")


@sensor("hwmon_power")
def hwmon_power(ctx: SensorContext) -> dict | None:
    """INA2xx power monitors under /sys/class/hwmon: power*_input (µW), or in*_input (mV) x
    curr*_input (mA) where the chip reports no power."""
    base = ctx.path("sys/class/hwmon")
    if not base.is_dir():
        return None
    total, found = 0.0, []
    for hw in sorted(base.iterdir()):
        name = ctx.read_text(hw / "name") or ""
        if not name.startswith(POWER_CHIPS):
            continue
        watts = 0.0
        powers = sorted(hw.glob("power*_input"))
        if powers:
            watts = sum((ctx.read_number(p) or 0.0) / 1e6 for p in powers)
        else:
            for volt in sorted(hw.glob("in*_input")):
                idx = re.sub(r"\D", "", volt.name)
                current = ctx.read_number(hw / f"curr{idx}_input")
                voltage = ctx.read_number(volt)
                if current is not None and voltage is not None and idx != "0":
                    watts += voltage / 1000 * current / 1000
        found.append(name)
        total += watts
    return {"watts": total, "source": ",".join(found)} if found else None


@sensor("jetson_ina3221")
def jetson_ina3221(ctx: SensorContext) -> dict | None:
    """Jetson's INA3221 rails: in_power*_input (mW) under the i2c device."""
    files = sorted(ctx.root.glob("sys/bus/i2c/drivers/ina3221*/*/iio:device*/in_power*_input"))
    if not files:
        return None
    return {"watts": sum((ctx.read_number(f) or 0.0) / 1000 for f in files), "source": "jetson-ina3221"}


@sensor("pi5_pmic")
def pi5_pmic(ctx: SensorContext) -> dict | None:
    """Raspberry Pi 5 PMIC: `vcgencmd pmic_read_adc` prints NAME_A current(N)=xA and NAME_V volt(N)=yV."""
    out = ctx.run_vcgencmd("pmic_read_adc")
    if not out:
        return None
    amps, volts = {}, {}
    for name, kind, value in re.findall(r"(\w+)_([AV]) \w+\(\d+\)=([\d.]+)", out):
        (amps if kind == "A" else volts)[name] = float(value)
    watts = sum(a * volts[n] for n, a in amps.items() if n in volts)
    return {"watts": watts, "source": "pi5-pmic"} if amps else None


@sensor("rapl")
def rapl(ctx: SensorContext) -> dict | None:
    """Linux powercap RAPL: a cumulative energy counter (µJ) that wraps at max_energy_range_uj."""
    zone = ctx.path("sys/class/powercap/intel-rapl:0")
    energy = ctx.read_number(zone / "energy_uj")
    if energy is None:
        return None
    wrap = ctx.read_number(zone / "max_energy_range_uj") or 2**32
    return {"energy_uj": energy, "wrap_uj": wrap, "source": "rapl"}


@sensor("thermal")
def thermal(ctx: SensorContext) -> dict | None:
    zones = {}
    for zone in sorted(ctx.root.glob("sys/class/thermal/thermal_zone*")):
        value = ctx.read_number(zone / "temp")
        if value is not None:
            zones[ctx.read_text(zone / "type") or zone.name] = value / 1000
    return {"temp_c": max(zones.values()), "zones": zones} if zones else None


@sensor("throttling")
def throttling(ctx: SensorContext) -> dict | None:
    """`vcgencmd get_throttled` -> throttled=0x50005: bit 0 under-voltage, 1 frequency capped,
    2 throttled, 3 soft temperature limit; bits 16-19 the same, since boot."""
    out = ctx.run_vcgencmd("get_throttled")
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", out or "")
    if not match:
        return None
    bits = int(match.group(1), 16)
    return {
        "throttled_bits": bits,
        "under_voltage": bool(bits & 1),
        "freq_capped": bool(bits & 2),
        "throttled": bool(bits & 4),
        "soft_temp_limit": bool(bits & 8),
        "throttled_since_boot": bool(bits & 0x40000),
    }


@sensor("cpufreq")
def cpufreq(ctx: SensorContext) -> dict | None:
    freqs = [
        ctx.read_number(p) for p in sorted(ctx.root.glob("sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"))
    ]
    freqs = [f for f in freqs if f is not None]
    return {"cpu_mhz": sum(freqs) / len(freqs) / 1000} if freqs else None


@sensor("cpu_times")
def cpu_times(ctx: SensorContext) -> dict | None:
    """Aggregate jiffies from /proc/stat; utilisation is the busy share between two readings."""
    text = ctx.read_text(ctx.path("proc/stat"))
    if not text or not text.startswith("cpu "):
        return None
    values = [float(v) for v in text.splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    return {"cpu_total": sum(values), "cpu_idle": idle}
