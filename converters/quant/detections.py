"""Detections of an ultralytics-format detector head (YOLOv8, YOLO11: one output
[batch, 4 + classes, anchors], boxes cx, cy, w, h in input pixels then class scores after the
sigmoid), decoded as ultralytics does (best class per anchor, confidence 0.25, class-wise NMS at
IoU 0.45), and the one-to-one matching of two runs' detections that says which of them changed.
numpy only: the accuracy-aware mode's ``detections`` rule counts with it, the tests judge with it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

YOLO_CONFIDENCE, YOLO_NMS_IOU, MATCH_IOU = 0.25, 0.45, 0.5


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (n, 4) x1, y1, x2, y2 in input pixels, most confident first
    classes: np.ndarray  # (n,) int
    scores: np.ndarray  # (n,)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4), corners x1, y1, x2, y2."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=-1), np.prod(b[:, 2:] - b[:, :2], axis=-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS: indices kept, most confident first."""
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[box_iou(boxes[best : best + 1], boxes[order])[0] <= iou]
    return np.array(keep, np.int64)


def yolo_detections(output: np.ndarray, confidence: float = YOLO_CONFIDENCE, iou: float = YOLO_NMS_IOU) -> Detections:
    """One image's output [1, 4 + classes, anchors] (or [4 + classes, anchors]) decoded: best class
    per anchor, those at ``confidence`` or above, class-wise NMS at ``iou``."""
    rows = np.asarray(output, np.float32).reshape(output.shape[-2], -1).T
    centre, size, class_scores = rows[:, :2], rows[:, 2:4], rows[:, 4:]
    kept = class_scores.max(-1) >= confidence
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)[kept]
    classes, scores = class_scores[kept].argmax(-1), class_scores[kept].max(-1)
    keep = [np.zeros(0, np.int64)]
    for c in np.unique(classes):
        of_class = np.flatnonzero(classes == c)
        keep.append(of_class[nms(boxes[of_class], scores[of_class], iou)])
    order = np.concatenate(keep)
    order = order[np.argsort(-scores[order], kind="stable")]
    return Detections(boxes[order], classes[order], scores[order])


def matched_pairs(
    reference: Detections, other: Detections, threshold: float = MATCH_IOU
) -> list[tuple[int, int, float]]:
    """(reference index, other index, IoU) of same-class detections overlapping by ``threshold`` or
    more, matched one to one greedily, best IoU first."""
    iou = box_iou(reference.boxes, other.boxes)
    iou[reference.classes[:, None] != other.classes[None, :]] = 0
    pairs = []
    while iou.size and iou.max() >= threshold:
        i, j = np.unravel_index(iou.argmax(), iou.shape)
        pairs.append((int(i), int(j), float(iou[i, j])))
        iou[i, :], iou[:, j] = 0, 0
    return pairs
