"""Final training of a genotype's network: recipes, the loop, evaluation, checkpoints."""

from nasctl.train.checkpoint import load_model, model_from_checkpoint, read_checkpoint
from nasctl.train.config import TrainConfig, load_config_file, parse_assignments, resolve_config
from nasctl.train.evaluate import evaluate_checkpoint
from nasctl.train.loop import TrainResult, resume_config, train
from nasctl.train.recipes import RECIPES

__all__ = [
    "RECIPES",
    "TrainConfig",
    "TrainResult",
    "evaluate_checkpoint",
    "load_config_file",
    "load_model",
    "model_from_checkpoint",
    "parse_assignments",
    "read_checkpoint",
    "resolve_config",
    "resume_config",
    "train",
]
