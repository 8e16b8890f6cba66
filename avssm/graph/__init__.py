"""What an exported avssm file is, with onnx and numpy only (no PyTorch, no OpenCV, no runtime).

* :mod:`avssm.graph.scan_node`: the ``trt.plugins::SelectiveScan`` node contract and the one reader of its inputs;
* :mod:`avssm.graph.metadata`: the avssm metadata schema (make, write, read, require) and the normalization;
* :mod:`avssm.graph.lowering`: SelectiveScan nodes -> standard ops (the portable form);
* :mod:`avssm.graph.qdq`: Q/DQ placement and putting scans back into a graph quantized through its lowering;
* :mod:`avssm.graph.onnx_io`: an exported file's input, and avssm's ONNX Runtime session options.

Both sides build on it: the torch side (ops <- models <- export) writes these files, the deployment side
(runtime <- calib) reads them.
"""
