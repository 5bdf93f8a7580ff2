"""nasctl: differentiable NAS from search to a validated, deployable engine."""

__version__ = "0.1.0"
