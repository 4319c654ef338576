"""The TFLite flatbuffer layer: the op table, the writer, the reader and importer.

It imports only numpy, flatbuffers, tflite and :mod:`edgekit.converters.ir.graph`, so the device side
(the op profiler) may use it."""
