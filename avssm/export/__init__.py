"""ONNX export: the plugin form (one ``trt.plugins::SelectiveScan`` node per scan, for TensorRT with the
avssm plugin) and the portable form (standard ONNX ops only), with metadata and verification. What the
written file is (node contract, metadata, lowering) lives in the torch-free avssm.graph."""
from avssm.export.onnx_export import ExportResult, export_onnx, verify_onnx
from avssm.graph.lowering import lower_selective_scan
from avssm.graph.metadata import read_metadata

__all__ = ["ExportResult", "export_onnx", "lower_selective_scan", "read_metadata", "verify_onnx"]
