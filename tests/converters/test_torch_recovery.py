"""Training-side recovery on the digits data: schedules, masks, QAT exported as QDQ and
converted with its trained scales."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
from edgekit.converters import convert  # noqa: E402
from edgekit.converters.torch import (  # noqa: E402
    MagnitudePruner,
    accuracy,
    apply_channel_masks,
    channel_masks,
    export_qdq,
    fold_batchnorm,
    polynomial_sparsity,
    prepare_qat,
    random_shift,
    train,
)
from edgekit.converters.verification import TFLiteRunner  # noqa: E402
from scripts.train_digits import DigitsCNN, load_split  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    x_tr, x_te, y_tr, y_te = load_split()
    torch.manual_seed(0)
    dense = train(DigitsCNN(), x_tr, y_tr, epochs=15)
    return x_tr, x_te, y_tr, y_te, dense


def test_polynomial_schedule():
    assert polynomial_sparsity(0, 10, 110, 0.9) == 0.0
    assert polynomial_sparsity(200, 10, 110, 0.9) == 0.9
    mid = [polynomial_sparsity(t, 10, 110, 0.9) for t in range(10, 111, 10)]
    assert mid == sorted(mid) and mid[1] - mid[0] > mid[-1] - mid[-2]  # fast at first, then slower


def test_gradual_magnitude_pruning_reaches_its_target(digits):
    x_tr, x_te, y_tr, y_te, dense = digits
    import copy

    model = copy.deepcopy(dense)
    steps = 5 * ((len(x_tr) + 63) // 64)
    pruner = MagnitudePruner(model, 0.8, begin=0, end=steps // 2, frequency=5)
    train(model, x_tr, y_tr, epochs=5, lr=1e-3, pruner=pruner)
    weights = torch.cat(
        [m.weight.detach().flatten() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    )
    assert abs(float((weights == 0).float().mean()) - 0.8) < 0.02
    assert accuracy(model, x_te, y_te) > 0.9


def test_layer_scope_prunes_every_layer_alike(digits):
    """A global threshold empties layers whose weights are small; scope=layer never does."""
    import copy

    dense = digits[-1]
    sparsity = {}
    for scope in ("global", "layer"):
        pruner = MagnitudePruner(copy.deepcopy(dense), 0.9, scope=scope)
        pruner.set_sparsity(0.9)
        sparsity[scope] = [1 - float(m.float().mean()) for m in pruner.masks.values()]
    assert all(abs(s - 0.9) < 0.01 for s in sparsity["layer"])
    assert max(sparsity["global"]) - min(sparsity["global"]) > 0.2
    with pytest.raises(ValueError, match="scope"):
        MagnitudePruner(dense, 0.5, scope="row")


def test_random_shift_moves_images_within_bounds():
    torch.manual_seed(0)
    images = torch.rand(64, 1, 8, 8) + 0.1  # no zero pixels: a zero shows where the border came in
    shifted = random_shift(1)(images)
    assert shifted.shape == images.shape
    moved = [not torch.equal(a, b) for a, b in zip(shifted, images, strict=True)]
    assert 0 < sum(moved) < len(images)  # (0, 0) is one of the nine offsets
    for a, b in zip(shifted, images, strict=True):  # every image is its original moved by <= 1 pixel
        assert any(
            torch.equal(
                a[:, max(dy, 0) : 8 + min(dy, 0), max(dx, 0) : 8 + min(dx, 0)],
                b[:, max(-dy, 0) : 8 + min(-dy, 0), max(-dx, 0) : 8 + min(-dx, 0)],
            )
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )


def test_distillation_uses_the_teachers_targets(digits):
    """alpha=1 trains on the teacher alone: a student distilled from a teacher that always says
    class 3 learns to say 3, whatever the labels."""
    x_tr, x_te, y_tr, y_te, _ = digits

    class Always3(torch.nn.Module):
        def forward(self, x):
            out = torch.full((len(x), 10), -5.0)
            out[:, 3] = 5.0
            return out

    def student(alpha: float):
        torch.manual_seed(0)
        return train(DigitsCNN(), x_tr[:256], y_tr[:256], epochs=10, teacher=Always3(), alpha=alpha)

    distilled = student(1.0)
    with torch.no_grad():
        assert float((distilled(torch.from_numpy(x_te)).argmax(1) == 3).float().mean()) > 0.95  # teacher alone
    assert accuracy(student(0.0), x_te, y_te) > 0.6  # the labels alone: the teacher is ignored


def test_channel_masks_survive_fine_tuning(digits):
    x_tr, _, y_tr, _, dense = digits
    import copy

    model = copy.deepcopy(dense)
    masks = {k: v for k, v in channel_masks(model, 0.5).items() if k in ("features.0", "features.3")}
    apply_channel_masks(model, masks)
    train(model, x_tr, y_tr, epochs=1, channel_mask=masks)
    conv = dict(model.named_modules())["features.0"]
    assert int((conv.weight.detach().flatten(1).abs().sum(1) == 0).sum()) == 8


def test_qat_exports_qdq_that_converts_with_its_scales(digits, tmp_path):
    x_tr, x_te, y_tr, y_te, dense = digits
    qat = train(prepare_qat(fold_batchnorm(dense)), x_tr, y_tr, epochs=2, lr=5e-4)
    path = tmp_path / "qat.onnx"
    export_qdq(qat, torch.zeros(1, 1, 8, 8), str(path))
    out = tmp_path / "qat.tflite"
    result = convert(str(path), out, quantize="int8")  # no calibration: the trained scales
    assert result.partitions == 1
    runner = TFLiteRunner(out.read_bytes())
    logits = np.stack([runner({"image": v[None]})["logits"][0] for v in x_te])
    assert float(np.mean(logits.argmax(1) == y_te)) >= accuracy(dense, x_te, y_te) - 0.01
