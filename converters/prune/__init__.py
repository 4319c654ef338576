"""Pruning and weight compression of ONNX models (structured channels, magnitude sparsity,
k-means weight sharing), and the size/MAC accounting that goes with them."""

from edgekit.converters.prune.channels import CRITERIA, find_groups, prune_channels
from edgekit.converters.prune.recovery import correct_bias
from edgekit.converters.prune.weights import cluster_weights, magnitude_prune

__all__ = ["CRITERIA", "cluster_weights", "correct_bias", "find_groups", "magnitude_prune", "prune_channels"]
