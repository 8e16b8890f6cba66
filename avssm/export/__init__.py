"""ONNX export (SelectiveScan plugin node and portable standard-op forms)."""
