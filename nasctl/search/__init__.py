"""Differentiable architecture search: one loop over registered search spaces (DARTS
cells, FairDARTS's mbconv chain), methods (FairDARTS, iDARTS, DARTS) and hardware costs
(MACs, latency). Importing the package registers the built-in plugins."""

from nasctl.search import (  # noqa: F401 - each module registers its plugin
    cells,
    darts,
    fairdarts,
    idarts,
    latency_cost,
    macs,
    mbconv,
)
from nasctl.search.config import (
    SearchConfig,
    make_search_config,
    resolve_search_config,
    resume_search_config,
)
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
    "make_search_config",
    "method_names",
    "resolve_search_config",
    "resume_search_config",
    "run_search",
    "saved_search_config",
    "space_names",
]
