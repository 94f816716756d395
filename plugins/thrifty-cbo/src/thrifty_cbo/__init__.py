"""thrifty-cbo: constrained Bayesian optimisation (Matérn 5/2 GPs, EI × probability of
feasibility) over discrete configuration spaces, registered as the optimizer ``thrifty-cbo``."""
