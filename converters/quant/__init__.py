"""int8 quantization: calibration, the quantizer, mixed precision, TFLite's int8 rules."""
