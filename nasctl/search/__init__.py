"""Differentiable architecture search: one loop over registered search spaces (DARTS
cells, FairDARTS's mbconv chain) and methods (FairDARTS, iDARTS, DARTS)."""

from nasctl.search.config import SearchConfig, resolve_search_config, resume_search_config
from nasctl.search.loop import SearchResult, run_search, saved_search_config
from nasctl.search.methods import SearchMethod, get_method, method_names
from nasctl.search.space import SearchSpace, get_space, space_names
from nasctl.search.supernet import SearchNetwork, edge_list

__all__ = [
    "SearchConfig",
    "SearchMethod",
    "SearchNetwork",
    "SearchResult",
    "SearchSpace",
    "edge_list",
    "get_method",
    "get_space",
    "method_names",
    "resolve_search_config",
    "resume_search_config",
    "run_search",
    "saved_search_config",
    "space_names",
]
