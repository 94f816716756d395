"""PairConnect for thrifty: hashed pairwise word embeddings in place of attention's dot products.

* :mod:`.layer` — the PairConnect layer (registered as the sparse layer ``pairconnect``);
* :mod:`.lm` — a PairConnect language model and the Transformer baseline it is measured against;
* :mod:`.draft` — the PairConnect draft model for speculative decoding (draft ``pairconnect``);
* :mod:`.onnx_step` — that draft's step as an ONNX graph, run by onnxruntime (draft
  ``pairconnect-onnx``, ``thrifty export-pairconnect-onnx``; extra ``onnx``);
* :mod:`.distill` — distilling a draft from a verifier's logits (``thrifty distill-pairconnect``).

Nothing here imports torch at package import; :mod:`.plugin` stays light for ``thrifty plugins``.
"""

__version__ = "0.1.0"
