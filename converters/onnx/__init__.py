"""Reading ONNX models and lowering their ops to TFLite builtins."""
