"""Run converted models on the host and report their outputs, for comparison with the same
script run on an arm64 board (or under qemu: scripts/arm64_userland.py).

    python scripts/pi_check.py convert OUT_DIR          # host: convert the sample model (fp32, int8, and
                                                        # int8 after channel pruning, sparsity,
                                                        # clustering, ternary and binary weights) and
                                                        # sign an OTA package of the int8 one
    python -I scripts/pi_check.py run OUT_DIR NAME      # host or board: outputs -> OUT_DIR/NAME.json
    python scripts/pi_check.py compare OUT_DIR A B      # max |A - B| and argmax agreement per model

``-I`` keeps the source tree's ``edgekit/`` folder from shadowing the installed package. Under
qemu, scripts/arm64_userland.py names the board's CPU (qemu's default "max" CPU has ISA extensions
no Pi has, and XNNPACK's int8 kernels pick them):

    sudo python3 scripts/arm64_userland.py run python -I scripts/pi_check.py run pi-out pi4
"""

from __future__ import annotations

import json
import platform
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np

MODELS = ("digits_fp32.tflite", "digits_int8.tflite")
PRUNED = ("digits_channels50_int8.tflite", "digits_sparse80_int8.tflite", "digits_clusters16_int8.tflite")
STEM = "stem_s2d_int8.tflite"  # a 7x7/2 conv on 3 channels, converted with --stem-block 4
PRELU = "prelu_dense_int8.tflite"  # PReLUs as int8 arithmetic, a MatMul + bias Add as one FULLY_CONNECTED
IMAGE_MODELS = (STEM, PRELU)  # fed the same random 64x64 images
LOWBIT = {"digits_ternary_int8.tflite": 3, "digits_binary_int8.tflite": 2}  # model -> values per channel


def _low_bit(dense, levels: int):
    """The digits CNN with its inner convolutions' weights projected as TWN (3 levels: 0 below
    0.7 x mean |w|, else +-the mean of the rest) or BWN (2 levels: +-mean |w|) do it, per output
    channel; the first convolution and the classifier stay as they are, as the papers keep them.
    Returns the model and the inner convolutions' node names."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(dense)
    inits = {i.name: i for i in model.graph.initializer}
    inner = [n for n in model.graph.node if n.op_type == "Conv"][1:]
    for node in inner:
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        flat = w.reshape(w.shape[0], -1)
        if levels == 2:
            projected = np.where(flat >= 0, 1.0, -1.0) * np.abs(flat).mean(1, keepdims=True)
        else:
            kept = np.abs(flat) > 0.7 * np.abs(flat).mean(1, keepdims=True)
            scale = (np.abs(flat) * kept).sum(1, keepdims=True) / np.maximum(kept.sum(1, keepdims=True), 1)
            projected = np.sign(flat) * kept * scale
        inits[node.input[1]].CopyFrom(
            numpy_helper.from_array(projected.reshape(w.shape).astype(np.float32), node.input[1])
        )
    return model, [n.name for n in inner]


def _image_classifier(name: str, nodes: list, weights: dict):
    """An ONNX model of ``nodes`` from image x [1, 3, 64, 64] to logits [1, 10]."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _stem_model():
    """Conv 7x7/2 (3 -> 16) -> ReLU -> MaxPool 3x3/2 -> Conv 1x1 -> mean -> MatMul (10 logits)."""
    from onnx import helper

    rng = np.random.default_rng(0)
    weights = {
        "w": rng.normal(0, 0.2, (16, 3, 7, 7)),
        "b": rng.normal(0, 0.1, 16),
        "w2": rng.normal(0, 0.3, (32, 16, 1, 1)),
        "fc": rng.normal(0, 0.3, (32, 10)),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[7, 7], strides=[2, 2], pads=[3] * 4),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
        helper.make_node("Conv", ["p", "w2"], ["c2"]),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    return _image_classifier("stem", nodes, weights)


def _publish_package(out: Path) -> None:
    """A fleet's TUF repository in OUT/fleet.tuf with the int8 model published as digits 1."""
    from edgekit import keys, package
    from edgekit.fleet import repository
    from edgekit.fleet.packages import PackageStore

    for name in ("root", "fleet", "online"):
        keys.create(out / f"{name}.key", out / f"{name}.pub", force=True)
    import shutil

    for stale in ("fleet.tuf", "store"):  # a package stored by an earlier run is not in the new metadata
        shutil.rmtree(out / stale, ignore_errors=True)
    signer = {name: repository.signer_from_file(out / f"{name}.key", name) for name in ("root", "fleet", "online")}
    repository.create(out / "fleet.tuf", signer["root"], signer["fleet"], keys.read_public(out / "online.pub"))
    repo = repository.Repository(out / "fleet.tuf", signer["online"])
    info = package.build(
        out / MODELS[1], out / "digits-1.tar", name="digits", version="1", signing_key=out / "fleet.key"
    )
    store = PackageStore(out / "store", repo)
    store.add(info.path, info.sha256)
    targets = repository.sign_targets(repo.file("targets.json").read_bytes(), signer["fleet"], info.path, info.manifest)
    repo.publish_targets(targets, store.sizes())


def _deploy_package(out: Path, name: str) -> Path:
    """What the agent does with a deploy: python-tuf's ngclient verifies the metadata served over
    HTTP, the package downloads, is checked against it, unpacks, passes its health check and serves."""
    import shutil

    from edgekit import keys
    from edgekit.agent.ota import Deployment, Slots
    from edgekit.agent.trust import UpdateTrust
    from edgekit.fleet import repository
    from edgekit.fleet.packages import PackageStore, serve_packages

    repo = repository.Repository(out / "fleet.tuf", repository.signer(keys.read_private(out / "online.key")))
    store = PackageStore(out / "store", repo)
    server = serve_packages(store)
    device = out / f"{name}-device"
    shutil.rmtree(device, ignore_errors=True)
    shutil.rmtree(f"{device}-tuf", ignore_errors=True)
    try:
        sha256, size = next(iter(store.sizes().items()))
        url = f"http://127.0.0.1:{server.server_address[1]}/packages/{sha256}.tar"
        slots = Slots(device, UpdateTrust(f"{device}-tuf", repo.file("root.json").read_bytes()))
        steps = []
        ok = slots.deploy(Deployment("pi-check", "digits-1.tar", sha256, size, url, "digits", "1"),
                          lambda _d, step, details: steps.append((step, details)))  # fmt: skip
        if not ok:
            raise SystemExit(f"the OTA deployment failed on this machine: {steps[-1]}")
        return slots.current_model()
    finally:
        server.shutdown()


def _prelu_model():
    """Conv 3x3 -> PRelu (slopes of both signs) -> Conv 1x1 -> PRelu (slopes <= 1) -> mean ->
    MatMul + Add (a Keras Dense) -> 10 logits."""
    from onnx import helper

    rng = np.random.default_rng(2)
    weights = {
        "w": rng.normal(0, 0.2, (16, 3, 3, 3)),
        "a": rng.uniform(-0.5, 1.5, (16, 1, 1)),
        "w2": rng.normal(0, 0.3, (32, 16, 1, 1)),
        "a2": rng.uniform(0.0, 0.3, (32, 1, 1)),
        "fc": rng.normal(0, 0.3, (32, 10)),
        "bias": rng.normal(0, 0.1, 10),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
        helper.make_node("PRelu", ["c", "a"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["c2"]),
        helper.make_node("PRelu", ["c2", "a2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["m"]),
        helper.make_node("Add", ["m", "bias"], ["logits"]),
    ]
    return _image_classifier("prelu", nodes, weights)


def main() -> None:
    command, out = sys.argv[1], Path(sys.argv[2])
    data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
    if command == "convert":
        from edgekit.converters import convert

        out.mkdir(parents=True, exist_ok=True)
        onnx_path = str(files("edgekit") / "samples" / "digits_cnn.onnx")
        convert(onnx_path, out / MODELS[0])
        convert(onnx_path, out / MODELS[1], quantize="int8", calibration=data["x_calib"])
        import onnx

        from edgekit.converters.prune import cluster_weights, magnitude_prune, prune_channels

        dense = onnx.load(onnx_path)
        pruned = (prune_channels(dense, 0.5), magnitude_prune(dense, 0.8)[0], cluster_weights(dense, 16))
        for name, model in zip(PRUNED, pruned, strict=True):
            convert(model, out / name, quantize="int8", calibration=data["x_calib"])
        for name, levels in LOWBIT.items():  # the writer's self-check holds the inner layers to their levels
            model, inner = _low_bit(dense, levels)
            bound = {node: levels for node in inner}
            convert(model, out / name, quantize="int8", calibration=data["x_calib"], max_weight_values=bound)
        images = np.random.default_rng(1).uniform(-1, 1, (48, 3, 64, 64)).astype(np.float32)
        convert(_stem_model(), out / STEM, quantize="int8", calibration=images[:16], stem_block=4)
        convert(_prelu_model(), out / PRELU, quantize="int8", calibration=images[:16])
        np.save(out / "stem_inputs.npy", images[16:].transpose(0, 2, 3, 1))
        _publish_package(out)
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
        paths = {name: out / name for name in (*MODELS, *PRUNED, *LOWBIT) if (out / name).exists()}
        if (out / "fleet.tuf").exists():  # the device's OTA path, end to end: TUF metadata, download, install
            paths["package:" + MODELS[1]] = _deploy_package(out, sys.argv[3])
        for name in (n for n in IMAGE_MODELS if (out / n).exists()):
            session = load(out / name, threads=2)
            images = np.load(out / "stem_inputs.npy")
            result[f"{name} xnnpack=True"] = np.concatenate([session.run(v[None])["logits"] for v in images]).tolist()
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
