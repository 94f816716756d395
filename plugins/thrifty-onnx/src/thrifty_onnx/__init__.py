"""ONNX Runtime draft models for thrifty.

* :mod:`thrifty_onnx.layout`: the graph contract (input/output names, metadata) and its checks;
* :mod:`thrifty_onnx.export`: ``export_draft`` turns an HF-style draft into such a graph;
* :mod:`thrifty_onnx.session`: execution providers, threads and session options;
* :mod:`thrifty_onnx.draft`: :class:`OnnxDraft`, the DraftModel over an ``InferenceSession``.
"""

__version__ = "0.1.0"
