"""Operators. Modules call :func:`selective_scan`; it picks the implementation."""
from avssm.ops.selective_scan import selective_scan, selective_scan_chunked, selective_scan_parallel, selective_scan_ref

__all__ = ["selective_scan", "selective_scan_chunked", "selective_scan_parallel", "selective_scan_ref"]
