"""The device side on arm64 without a board: a Raspberry Pi OS-like userland (Debian bookworm,
Python 3.11, aarch64) run under qemu user-mode emulation, and scripts/pi_check.py run inside it.

    sudo python3 scripts/arm64_userland.py check          # everything below, then compare host and arm64
    sudo python3 scripts/arm64_userland.py setup          # qemu + debootstrap, the arm64 root (once, ~5 min)
    sudo python3 scripts/arm64_userland.py install [EXTRAS]   # a fresh venv in the root: pip install .[EXTRAS]
    sudo python3 scripts/arm64_userland.py run CMD...     # CMD in the root, in the project, venv active

Needs root (chroot, mounts, binfmt) and network to Debian's mirror and the package registry. The
root lives in $EDGEKIT_ARM64_ROOT (default /var/tmp/edgekit-arm64). Timings under emulation say
nothing about a Pi: this answers "does it install, import, load and compute the same numbers".
The emulated CPU is a Cortex-A72 (a Pi 4): qemu's default CPU has ISA extensions no Pi has, and
XNNPACK's int8 kernels would pick them."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("EDGEKIT_ARM64_ROOT", "/var/tmp/edgekit-arm64"))
VENV = "/opt/edgekit"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates,libgomp1"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check)


def mounted(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0


def prepare_mounts() -> None:
    """binfmt for aarch64, /proc, /dev, the project at /project, the host's DNS and CA bundle."""
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        sh("mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt))
    if not (binfmt / "qemu-aarch64").exists():
        sh("update-binfmts", "--enable", "qemu-aarch64")
    for target, source, kind in ((ROOT / "proc", "proc", "proc"), (ROOT / "dev", "/dev", None)):
        if not mounted(target):
            sh("mount", *(["-t", kind, source] if kind else ["--bind", source]), str(target))
    # the host's /sys cpu entries describe x86 cores and confuse arm64 libraries: give only the cpu lists
    cpu = ROOT / "sys/devices/system/cpu"
    cpu.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (cpu / name).write_text(f"0-{os.cpu_count() - 1}\n")
    project = ROOT / "project"
    project.mkdir(exist_ok=True)
    if mounted(project):
        sh("umount", str(project))
    sh("mount", "--bind", str(PROJECT), str(project))
    shutil.copyfile("/etc/resolv.conf", ROOT / "etc/resolv.conf")
    if HOST_CA.exists():
        shutil.copyfile(HOST_CA, ROOT / "etc/ssl/certs/host-ca.pem")


def in_root(command: str) -> int:
    prepare_mounts()
    env = {
        "HOME": "/root",
        "PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "QEMU_CPU": "cortex-a72",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CERT": "/etc/ssl/certs/host-ca.pem",
        "SSL_CERT_FILE": "/etc/ssl/certs/host-ca.pem",
    }
    argv = ["chroot", str(ROOT), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items())]
    return subprocess.run([*argv, "/bin/bash", "-c", f"cd /project && {command}"]).returncode


def setup() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    apt = ["apt-get", "install", "-y", "-qq", "qemu-user-static", "binfmt-support", "debootstrap"]
    subprocess.run(apt, check=True, env=env, stdout=subprocess.DEVNULL)
    if not (ROOT / "usr/bin/python3").exists():
        shutil.rmtree(ROOT, ignore_errors=True)
        ROOT.mkdir(parents=True)
        sh("debootstrap", "--arch=arm64", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(ROOT), MIRROR)
    if in_root("uname -m && python3 --version") != 0:
        raise SystemExit("the arm64 root does not run; see the output above")


def install(extras: str = "device") -> int:
    return in_root(f"rm -rf {VENV} && python3 -m venv {VENV} && pip install -q '.[{extras}]' && pip list | wc -l")


def check() -> int:
    """Host conversion, arm64 run (inference and the TUF-verified OTA path), comparison."""
    setup()
    if install() != 0:
        return 1
    out = "pi-out"
    venv = PROJECT / ".venv" / "bin" / "python"  # the host side converts: the project's dev venv (scripts/dev)
    python = str(venv) if venv.exists() else sys.executable
    sh(python, "scripts/pi_check.py", "convert", out)
    sh(python, "-I", "scripts/pi_check.py", "run", out, "host")
    if in_root(f"python -I scripts/pi_check.py run {out} arm64") != 0:
        return 1
    return sh(python, "scripts/pi_check.py", "compare", out, "host", "arm64").returncode


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("arm64_userland.py needs root (chroot, mounts, binfmt): run it with sudo")
    if len(sys.argv) < 2 or sys.argv[1] not in ("setup", "install", "run", "check"):
        raise SystemExit(__doc__)
    os.chdir(PROJECT)
    action, rest = sys.argv[1], sys.argv[2:]
    if action == "setup":
        setup()
        return 0
    if action == "install":
        return install(*rest[:1])
    if action == "run":
        return in_root(shlex.join(rest))
    return check()


if __name__ == "__main__":
    sys.exit(main())
