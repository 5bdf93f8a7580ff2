"""ONNX export and TensorRT engine building."""
