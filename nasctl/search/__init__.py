"""Differentiable architecture search on the DARTS cell space (FairDARTS, iDARTS, DARTS)."""

from nasctl.search.loop import SearchConfig, SearchResult, run_search
from nasctl.search.methods import SearchMethod, get_method, method_names
from nasctl.search.supernet import SearchNetwork, edge_list

__all__ = [
    "SearchConfig",
    "SearchMethod",
    "SearchNetwork",
    "SearchResult",
    "edge_list",
    "get_method",
    "method_names",
    "run_search",
]
