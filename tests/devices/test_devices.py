"""Board detection, sensor readers and energy integration on fake sysfs trees."""

from __future__ import annotations

import threading
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


class Driver(threading.Thread):
    """Writes a sysfs value following a known curve until stopped."""

    def __init__(self, path: Path, value_at) -> None:
        super().__init__(daemon=True)
        self.path, self.value_at, self.stop = path, value_at, threading.Event()
        self.t0 = time.monotonic()
        self.path.write_text(str(int(value_at(0.0))))

    def run(self) -> None:
        while not self.stop.is_set():
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(str(int(self.value_at(time.monotonic() - self.t0))))
            tmp.replace(self.path)
            time.sleep(0.0005)


def test_energy_of_a_known_power_curve(tmp_path):
    """Power ramps 2 W -> 2 W + 3 W/s on a fake INA219: the integral is exact within 1%."""
    write(tmp_path / "sys/class/hwmon/hwmon0/name", "ina219\n")
    power = tmp_path / "sys/class/hwmon/hwmon0/power1_input"
    driver = Driver(power, lambda t: (2.0 + 3.0 * t) * 1e6)
    driver.start()
    meter = EnergyMeter(tmp_path, rate_hz=200, idle_watts=1.0)
    assert meter.source == "hwmon_power"
    time.sleep(0.05)
    meter.begin()
    time.sleep(0.8)
    window = meter.end()
    driver.stop.set()
    driver.join()
    first, last = meter._samples[0][0] - driver.t0, meter._samples[-1][0] - driver.t0
    exact = 2.0 * (last - first) + 1.5 * (last**2 - first**2)
    assert not window.estimated and window.samples > 50
    assert window.joules == pytest.approx(exact, rel=0.01)
    assert window.millijoules_per_inference(10) == pytest.approx(1000 * (window.joules - window.seconds) / 10)


def test_energy_integration_is_the_trapezoid_rule():
    """Issue 26: a left Riemann sum passed the 1% test above (200 Hz makes the difference small);
    on coarse samples of a step the three rules differ, and only the trapezoid gives 15 J."""
    from edgekit.devices.energy import integrate

    assert integrate([(0.0, 0.0), (1.0, 10.0), (2.0, 10.0)]) == pytest.approx(15.0)
    assert integrate([(0.0, 4.0)]) == 0.0


def test_rapl_counter_wraps(tmp_path):
    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    write(zone / "max_energy_range_uj", "1000000\n")  # wraps every joule
    driver = Driver(zone / "energy_uj", lambda t: (5.0 * t * 1e6 + 900_000) % 1_000_000)  # 5 W
    driver.start()
    meter = EnergyMeter(tmp_path, rate_hz=100)
    assert meter.source == "rapl"
    meter.begin()
    time.sleep(0.6)
    window = meter.end()
    driver.stop.set()
    driver.join()
    assert window.mean_watts == pytest.approx(5.0, rel=0.01)
    assert rapl_delta(999_000, 1_000, 1_000_000) == 2_000


def test_estimate_is_flagged(tmp_path):
    write(tmp_path / "proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n")
    meter = EnergyMeter(tmp_path, rate_hz=50)
    meter.begin()
    time.sleep(0.1)
    window = meter.end()
    assert window.estimated and window.source == "estimate"
