"""Candidate ops and final networks built from genotypes."""

from nasctl.nets.network import DATASET_SETTINGS, DartsNetwork, build_network, dataset_settings

__all__ = ["DATASET_SETTINGS", "DartsNetwork", "build_network", "dataset_settings"]
