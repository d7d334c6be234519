"""rnnlab: train recurrent language models effectively, and see why they train (or don't)."""

from rnnlab.config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from rnnlab.errors import CheckpointError, ConfigError, DataError, RnnlabError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataConfig",
    "DataError",
    "ModelConfig",
    "RnnlabError",
    "TrainConfig",
    "load_config",
]
