"""thrifty-lsh: LSH neuron samplers, SLIDE sparse layers, extreme-classification data and
(distributed) sparse training. See docs/slide.md."""

__version__ = "0.1.0"
