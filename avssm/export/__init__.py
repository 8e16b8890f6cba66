"""ONNX export: the plugin form (one ``trt.plugins::SelectiveScan`` node per scan, for TensorRT with the
avssm plugin) and the portable form (standard ONNX ops only), with metadata and verification. What the
written file is (node contract, metadata, lowering) lives in the torch-free avssm.graph. Names are loaded on
first use, so the CLI's reading of ``avssm.export.options`` costs nothing.
"""
import importlib

_EXPORTS = {"ExportResult": "avssm.export.onnx_export", "export_onnx": "avssm.export.onnx_export",
            "verify_onnx": "avssm.export.onnx_export", "ExportOptions": "avssm.export.options",
            "lower_selective_scan": "avssm.graph.lowering", "read_metadata": "avssm.graph.metadata"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'avssm.export' has no attribute '{name}'")
