"""ONNX export: the plugin form (one ``trt.plugins::SelectiveScan`` node per scan, for TensorRT with the
avssm plugin) and the portable form (standard ONNX ops only), with metadata and verification."""
from avssm.export.onnx_export import ExportResult, export_onnx, read_metadata, verify_onnx
from avssm.export.portable import lower_selective_scan

__all__ = ["ExportResult", "export_onnx", "lower_selective_scan", "read_metadata", "verify_onnx"]
