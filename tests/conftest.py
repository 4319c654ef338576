import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Tests that may skip, and why. In CI (CI set) any other skip fails the run: the test command
# installs torch, Mosquitto and PostgreSQL, so a skip there means a missing install, not a choice.
ALLOWED_SKIPS = {
    # the tflite-runtime environment (numpy < 2) installs no onnx/onnxruntime, on purpose
    "tests/runtime/test_session.py::test_onnx_backend": "onnxruntime is not in the tflite-runtime environment",
}
_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    # an expected failure reports itself as skipped too; its strict xfail mark already decides it
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus):
    if not os.environ.get("CI") or exitstatus not in (0, pytest.ExitCode.OK):
        return
    unexplained = [(n, r) for n, r in _skipped if not any(n.startswith(p) for p in ALLOWED_SKIPS)]
    if unexplained:
        for nodeid, reason in unexplained:
            print(f"\nunexplained skip in CI: {nodeid}: {reason}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
