"""Board detection, sensor readers and energy integration on fake sysfs trees."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgekit.devices import detect, profiles, read_sensors
from edgekit.devices.energy import EnergyMeter, rapl_delta


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_profiles_are_complete():
    ids = set(profiles())
    assert {
        "raspberry-pi-4",
        "raspberry-pi-5",
        "raspberry-pi-zero-2w",
        "coral-dev-board",
        "coral-usb-on-pi",
        "jetson-nano",
        "jetson-orin-nano",
        "generic-x86_64",
        "generic-aarch64",
    } <= ids
    for p in profiles().values():
        assert p.max_watts > p.idle_watts > 0, p.id


@pytest.mark.parametrize(
    ("model", "board"),
    [
        ("Raspberry Pi 5 Model B Rev 1.0", "raspberry-pi-5"),
        ("Raspberry Pi 4 Model B Rev 1.4", "raspberry-pi-4"),
        ("Raspberry Pi Zero 2 W Rev 1.0", "raspberry-pi-zero-2w"),
        ("NVIDIA Jetson Nano Developer Kit", "jetson-nano"),
    ],
)
def test_detect_from_device_tree(tmp_path, model, board):
    write(tmp_path / "proc/device-tree/model", model + "\x00")
    assert detect(tmp_path).id == board


def test_detect_falls_back_to_generic(tmp_path):
    write(tmp_path / "proc/cpuinfo", "processor\t: 0\nmodel\t\t: 17\n")
    profile = detect(tmp_path)
    assert profile.id.startswith("generic-") and profile.recommended_threads >= 1


def test_hwmon_ina226_and_thermal_and_cpufreq(tmp_path):
    write(tmp_path / "sys/class/hwmon/hwmon0/name", "ina226\n")
    write(tmp_path / "sys/class/hwmon/hwmon0/power1_input", "4250000\n")  # µW
    write(tmp_path / "sys/class/hwmon/hwmon1/name", "ina3221\n")
    write(tmp_path / "sys/class/hwmon/hwmon1/in1_input", "5000\n")  # mV
    write(tmp_path / "sys/class/hwmon/hwmon1/curr1_input", "300\n")  # mA
    write(tmp_path / "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(tmp_path / "sys/class/thermal/thermal_zone0/temp", "61250\n")
    write(tmp_path / "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "1800000\n")
    readings = read_sensors(tmp_path)
    assert readings["hwmon_power"]["watts"] == pytest.approx(4.25 + 1.5)
    assert readings["thermal"]["temp_c"] == pytest.approx(61.25)
    assert readings["cpufreq"]["cpu_mhz"] == pytest.approx(1800)


def _fake_vcgencmd(tmp_path: Path, outputs: dict[str, str]) -> str:
    script = tmp_path / "vcgencmd"
    cases = "\n".join(f'  {k}) printf "%s\\n" "{v}" ;;' for k, v in outputs.items())
    script.write_text(f'#!/bin/sh\ncase "$1" in\n{cases}\n  *) exit 1 ;;\nesac\n')
    script.chmod(0o755)
    return str(script)


def test_pi5_pmic_and_throttling(tmp_path):
    tool = _fake_vcgencmd(
        tmp_path,
        {
            "pmic_read_adc": "VDD_CORE_A current(7)=2.00000000A\n   VDD_CORE_V volt(15)=0.80000000V\n"
            "   EXT5V_V volt(24)=5.10000000V",
            "get_throttled": "throttled=0x50005",
        },
    )
    readings = read_sensors(tmp_path, vcgencmd=tool)
    assert readings["pi5_pmic"]["watts"] == pytest.approx(1.6)
    throttle = readings["throttling"]
    assert throttle["under_voltage"] and throttle["throttled"] and not throttle["freq_capped"]
    assert throttle["throttled_since_boot"]


def test_unreadable_sensor_is_skipped(tmp_path):
    write(tmp_path / "sys/class/hwmon/hwmon0/name", "ina219\n")
    (tmp_path / "sys/class/hwmon/hwmon0/power1_input").mkdir()  # reading it fails
    write(tmp_path / "sys/class/thermal/thermal_zone0/temp", "garbage\n")
    readings = read_sensors(tmp_path)
    assert readings.get("hwmon_power", {"watts": 0})["watts"] == 0
    assert "thermal" not in readings


def test_energy_window_reads_the_power_sensor_through_a_load_change(tmp_path):
    """A fake INA219 reads 2 W, then 5 W halfway through the window. The meter's thread must
    read the sensor in watts all along (both levels, nothing else), and the window's energy and
    mean must follow the readings. The test changes the value itself rather than from a timed
    thread: a writer thread lags on a loaded machine, and a lag is an error in the "exact" curve."""
    write(tmp_path / "sys/class/hwmon/hwmon0/name", "ina219\n")
    power = tmp_path / "sys/class/hwmon/hwmon0/power1_input"
    power.write_text("2000000\n")
    meter = EnergyMeter(tmp_path, rate_hz=200, idle_watts=1.0)
    assert meter.source == "hwmon_power"
    meter.begin()
    time.sleep(0.3)
    staged = power.with_suffix(".tmp")
    staged.write_text("5000000\n")
    staged.replace(power)
    time.sleep(0.3)
    window = meter.end()
    times, watts = zip(*meter._samples, strict=True)
    assert set(watts) == {2.0, 5.0} and list(times) == sorted(times)
    switch = watts.index(5.0)
    assert set(watts[switch:]) == {5.0}, "the meter read the old value after the new one"
    assert not window.estimated and window.samples == len(times) > 2
    assert window.seconds == pytest.approx(times[-1] - times[0])
    expected = 2.0 * (times[switch - 1] - times[0]) + 3.5 * (times[switch] - times[switch - 1])
    expected += 5.0 * (times[-1] - times[switch])
    assert window.joules == pytest.approx(expected, rel=1e-9)
    assert 2.0 < window.mean_watts < 5.0
    assert window.millijoules_per_inference(10) == pytest.approx(1000 * (window.joules - window.seconds) / 10)


def test_energy_integration_is_the_trapezoid_rule():
    """Issue 26: a left Riemann sum passed the 1% test above (200 Hz makes the difference small);
    on coarse samples of a step the three rules differ, and only the trapezoid gives 15 J."""
    from edgekit.devices.energy import integrate

    assert integrate([(0.0, 0.0), (1.0, 10.0), (2.0, 10.0)]) == pytest.approx(15.0)
    assert integrate([(0.0, 4.0)]) == 0.0


def test_rapl_counter_wraps(tmp_path):
    """The counter moves 900000 -> 400000 (across the wrap at 1 J) -> 700000 µJ during the window:
    0.8 J, whenever the meter's thread happens to read it."""
    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    write(zone / "max_energy_range_uj", "1000000\n")
    counter = zone / "energy_uj"
    counter.write_text("900000\n")
    meter = EnergyMeter(tmp_path, rate_hz=100)
    assert meter.source == "rapl"
    meter.begin()
    for value in ("400000", "700000"):
        time.sleep(0.2)
        staged = counter.with_suffix(".tmp")
        staged.write_text(value + "\n")
        staged.replace(counter)
    time.sleep(0.1)
    window = meter.end()
    assert not window.estimated and window.joules == pytest.approx(0.8)
    assert window.mean_watts == pytest.approx(0.8 / window.seconds)
    assert rapl_delta(999_000, 1_000, 1_000_000) == 2_000


def test_a_window_spans_begin_to_end_even_if_the_sampling_thread_never_runs(tmp_path, monkeypatch):
    """On a loaded board the meter's thread may first run long after begin(): the counter must
    still be read at begin(), or the energy used before the thread's first reading is lost (here
    all 0.8 J of it)."""
    monkeypatch.setattr(EnergyMeter, "_loop", lambda self: None)
    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    write(zone / "max_energy_range_uj", "1000000\n")
    counter = zone / "energy_uj"
    counter.write_text("900000\n")
    meter = EnergyMeter(tmp_path, rate_hz=100)
    meter.begin()
    counter.write_text("700000\n")
    window = meter.end()
    assert window.samples == 2 and window.joules == pytest.approx(0.8)


def test_estimate_is_flagged(tmp_path):
    write(tmp_path / "proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n")
    meter = EnergyMeter(tmp_path, rate_hz=50)
    meter.begin()
    time.sleep(0.1)
    window = meter.end()
    assert window.estimated and window.source == "estimate"
