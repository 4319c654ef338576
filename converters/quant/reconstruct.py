"""``--weight-rounding reconstruct``: each int8 weight rounded by layer-wise reconstruction on the
calibration data instead of to nearest.

Rounding every weight to its nearest grid value minimises the error of each weight, not of the
layer's output. Over the calibration data a layer's output error is ``(Q - W) X``; its squared sum
is ``(q - w)^T H (q - w)`` per output channel, with ``H = sum of x x^T`` over the input patches
the channel reads. The rounding follows GPTQ (Frantar et al., 2023; the Optimal Brain Quantizer's
sequential form, the same objective AdaRound relaxes): the weights of a channel are rounded one
input at a time, and each rounding error is spread over the weights not yet rounded through the
inverse of ``H``, so that they compensate it. Scales stay what round-to-nearest chose (per output
channel, symmetric), so every rule of TFLite's int8 kernels holds as before.

``H`` is measured while the float model calibrates, on at most :data:`POSITIONS` output
positions of each sample (drawn per layer, seeded), in the order of the weights' flattened
kernel (TFLite's OHWI, or HW per channel for a depthwise convolution)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgekit.converters.ir.graph import Graph, Node

POSITIONS = 512  # output positions of each calibration sample that enter a layer's H
DAMPING = 0.01  # of H's mean diagonal, added to the diagonal: H is singular where inputs are collinear
BLOCK = 128  # columns rounded before the rest of the weights is updated at once (a matrix product)
RECONSTRUCTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


class InputMoments:
    """``H`` of every weighted op of a float TFLite-level graph, accumulated from the values of
    the tensors they read (:meth:`taps` gives calibration the functions to call with them)."""

    def __init__(self, graph: Graph, seed: int = 0) -> None:
        self.graph = graph
        self.rng = np.random.default_rng(seed)
        self.nodes = [n for n in graph.nodes if n.op in RECONSTRUCTED and graph.is_const(n.inputs[1])]
        self.moments: dict[str, np.ndarray] = {}

    def taps(self) -> dict[str, list[Callable[[np.ndarray], None]]]:
        """Tensor name -> the functions that take one sample's value of it."""
        found: dict[str, list[Callable[[np.ndarray], None]]] = {}
        for node in self.nodes:
            found.setdefault(node.inputs[0], []).append(lambda value, n=node: self._add(n, value))
        return found

    def _add(self, node: Node, value: np.ndarray) -> None:
        if node.op == "FULLY_CONNECTED":
            rows = value.reshape(-1, value.shape[-1]).astype(np.float64)
            rows = rows[self._chosen(len(rows))]
            moment = rows.T @ rows
        else:  # [P, G, D]: the patches of each group of input channels (one group, or one per channel)
            moment = sum(self._moment(node, x.astype(np.float64)) for x in value.reshape(-1, *value.shape[-3:]))
        key = node.outputs[0]
        self.moments[key] = self.moments[key] + moment if key in self.moments else moment

    def _moment(self, node: Node, x: np.ndarray) -> np.ndarray:
        """One HWC sample's moment: [D, D] for a plain convolution, [G, D, D] for one of G groups
        (a depthwise convolution's groups are its input channels)."""
        weights = self.graph.shape(node.inputs[1])
        kh, kw = weights[1:3]
        a = node.attrs
        dh, dw = a.get("dilation_h_factor", 1), a.get("dilation_w_factor", 1)
        sh, sw = a.get("stride_h", 1), a.get("stride_w", 1)
        if a.get("padding") in ("SAME", 0):
            x = np.pad(x, [_same(x.shape[0], kh, sh, dh), _same(x.shape[1], kw, sw, dw), (0, 0)])
        span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
        windows = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(0, 1))
        windows = windows[::sh, ::sw, :, ::dh, ::dw]  # [Ho, Wo, C, kh, kw], a view
        rows, columns = np.divmod(self._chosen(windows.shape[0] * windows.shape[1]), windows.shape[1])
        windows = windows[rows, columns]  # [P, C, kh, kw]: only the chosen positions copied
        channels = windows.shape[1]
        groups = channels if node.op == "DEPTHWISE_CONV_2D" else channels // weights[3]
        patches = windows.reshape(len(windows), groups, channels // groups, kh, kw).transpose(0, 1, 3, 4, 2)
        patches = patches.reshape(len(windows), groups, -1)  # each group's patch as its weights are flattened
        if groups == 1:
            return patches[:, 0].T @ patches[:, 0]
        return np.einsum("pgk,pgl->gkl", patches, patches)

    def _chosen(self, count: int) -> np.ndarray:
        if count <= POSITIONS:
            return np.arange(count)
        return np.sort(self.rng.choice(count, POSITIONS, replace=False))


def _same(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    from edgekit.converters.onnx.lowering.conv import same_padding

    _, before, after = same_padding(size, kernel, stride, dilation)
    return before, after


def reconstructed_weights(op: str, w: np.ndarray, scale: np.ndarray, moment: np.ndarray, qmax: int = 127):
    """int8 weights of ``op`` (float ``w`` in TFLite's layout, per-channel or per-tensor
    ``scale``) rounded by reconstruction against ``moment`` (:class:`InputMoments`)."""
    depthwise = op == "DEPTHWISE_CONV_2D"  # [1, kh, kw, C*M]: a row of kh*kw weights per output channel
    rows = w.reshape(-1, w.shape[-1]).T if depthwise else w.reshape(w.shape[0], -1)
    if moment.ndim == 3:  # one moment per group of input channels; each output channel reads one group
        moment = np.repeat(moment, len(rows) // len(moment), axis=0)
    q = _rounded(rows, np.broadcast_to(scale.reshape(-1), (len(rows),)), moment, qmax)
    return q.T.reshape(w.shape) if depthwise else q.reshape(w.shape)


def _rounded(w: np.ndarray, scale: np.ndarray, moment: np.ndarray, qmax: int) -> np.ndarray:
    """Rows of ``w`` rounded to ``scale``'s grid one column at a time, each error spread over the
    columns after it through the inverse of ``moment`` (one for all rows, or one per row)."""
    w = w.astype(np.float64).copy()
    scale = scale.astype(np.float64)[:, None]
    upper = _inverse_cholesky(moment)
    q = np.zeros(w.shape, np.int8)
    batched = upper.ndim == 3
    for start in range(0, w.shape[1], BLOCK):
        end = min(start + BLOCK, w.shape[1])
        errors = np.zeros((len(w), end - start))
        for j in range(start, end):
            column = np.clip(np.round(w[:, j : j + 1] / scale), -qmax, qmax)
            q[:, j] = column[:, 0]
            diagonal = upper[:, j, j] if batched else upper[j, j]
            error = (w[:, j] - column[:, 0] * scale[:, 0]) / diagonal
            w[:, j + 1 : end] -= error[:, None] * (upper[:, j, j + 1 : end] if batched else upper[j, j + 1 : end])
            errors[:, j - start] = error
        if end < w.shape[1]:
            if batched:
                w[:, end:] -= np.einsum("rk,rkc->rc", errors, upper[:, start:end, end:])
            else:
                w[:, end:] -= errors @ upper[start:end, end:]
    return q


def _inverse_cholesky(moment: np.ndarray) -> np.ndarray:
    """The upper Cholesky factor of the damped moment's inverse (batched over a leading axis)."""
    h = np.array(moment, np.float64)
    size = h.shape[-1]
    diagonal = np.diagonal(h, axis1=-2, axis2=-1)
    dead = diagonal == 0  # an input that is always 0: its weight's rounding changes nothing
    eye = np.eye(size)
    h = h + dead[..., None] * eye  # (where dead, the row and column are zero already)
    damping = DAMPING * np.mean(np.diagonal(h, axis1=-2, axis2=-1), axis=-1)
    h = h + np.asarray(damping)[..., None, None] * eye
    return np.swapaxes(np.linalg.cholesky(np.linalg.inv(h)), -1, -2)
