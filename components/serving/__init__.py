"""Serving a trained student: the whole top-down predictor as one module, its ONNX export, the
MLflow pyfunc the registry ships, and person detection for images without boxes."""
