"""The graph every pass works on: tensors, nodes, quantization parameters."""
