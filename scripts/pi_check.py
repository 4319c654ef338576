"""Run converted models on the host and report their outputs, for comparison with the same
script run on an arm64 board (or under ../shared/tools/pi-emu).

    python scripts/pi_check.py convert OUT_DIR          # host: convert the sample model (fp32, int8) and
                                                        # sign an OTA package of the int8 one
    python -I scripts/pi_check.py run OUT_DIR NAME      # host or board: outputs -> OUT_DIR/NAME.json
    python scripts/pi_check.py compare OUT_DIR A B      # max |A - B| and argmax agreement per model

``-I`` keeps the source tree's ``edgekit/`` folder from shadowing the installed package. Under
pi-emu, name the board's CPU (qemu's default "max" CPU has ISA extensions no Pi has, and
XNNPACK's int8 kernels pick them); pi-emu clears the environment, so set it inside the command:

    ../shared/tools/pi-emu run env QEMU_CPU=cortex-a72 python -I scripts/pi_check.py run pi-out pi4
"""

from __future__ import annotations

import json
import platform
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np

MODELS = ("digits_fp32.tflite", "digits_int8.tflite")


def main() -> None:
    command, out = sys.argv[1], Path(sys.argv[2])
    data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
    if command == "convert":
        from edgekit.converters import convert

        out.mkdir(parents=True, exist_ok=True)
        onnx_path = str(files("edgekit") / "samples" / "digits_cnn.onnx")
        convert(onnx_path, out / MODELS[0])
        convert(onnx_path, out / MODELS[1], quantize="int8", calibration=data["x_calib"])
        from edgekit import package

        package.generate_key(out / "fleet.key", out / "fleet.pub")
        package.build(
            out / MODELS[1], out / "digits-int8.tar.xz", name="digits", version="1", signing_key=out / "fleet.key"
        )
    elif command == "run":
        from edgekit.devices import detect
        from edgekit.runtime import available, load

        x = data["x_test"][:32].transpose(0, 2, 3, 1)
        result = {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "backends": available(),
            "board": detect().id,
        }
        paths = {name: out / name for name in MODELS}
        if (out / "digits-int8.tar.xz").exists():  # the device's OTA path: verify, then unpack, then load
            import shutil
            import tempfile

            from edgekit import package

            package.verify(out / "digits-int8.tar.xz", public_key=(out / "fleet.pub").read_text().strip())
            unpacked = Path(tempfile.mkdtemp()) / "slot"
            manifest = package.unpack(out / "digits-int8.tar.xz", unpacked)
            staged = out / f"{sys.argv[3]}-package"
            shutil.rmtree(staged, ignore_errors=True)
            shutil.copytree(unpacked, staged)
            paths["package:" + manifest["model"]] = staged / manifest["model"]
        for name, path in paths.items():
            for xnnpack in (True, False):
                session = load(path, threads=2, xnnpack=xnnpack)
                result[f"{name} xnnpack={xnnpack}"] = np.concatenate(
                    [session.run(v[None])["logits"] for v in x]
                ).tolist()
        (out / f"{sys.argv[3]}.json").write_text(json.dumps(result))
        print(result["machine"], result["python"], result["backends"], result["board"])
    elif command == "compare":
        a = json.loads((out / f"{sys.argv[3]}.json").read_text())
        b = json.loads((out / f"{sys.argv[4]}.json").read_text())
        print(f"{sys.argv[3]} ({a['machine']}) vs {sys.argv[4]} ({b['machine']}, python {b['python']})")
        for key in (k for k in a if k.endswith(("True", "False"))):
            x, y = np.array(a[key]), np.array(b[key])
            agree = np.mean(x.argmax(1) == y.argmax(1))
            print(f"  {key:<36} max |diff| {np.abs(x - y).max():.4g}  argmax agree {agree:.3f}")


if __name__ == "__main__":
    main()
