"""thrifty-cbo: constrained Bayesian optimisation (Matérn 5/2 GPs on energy and latency; the
lowest optimistic energy among configurations likely to meet the SLO, or EI × probability of
feasibility) over discrete configuration spaces, registered as the optimizer ``cbo``."""
