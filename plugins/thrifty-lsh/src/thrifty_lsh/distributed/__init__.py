"""Distributed SLIDE: the wide layer sharded over torch.distributed ranks (see docs/distributed.md)."""
