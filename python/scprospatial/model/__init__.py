"""The AnnData-facing RNA->protein model and its file-level entry points (used by the CLI)."""
from ._config import STAGES, ModelConfig
from ._files import impute_file, train_files
from ._model import ScProSpatial
from ._vocab import Vocabulary, build_vocabulary

__all__ = ["STAGES", "ModelConfig", "ScProSpatial", "Vocabulary", "build_vocabulary", "impute_file", "train_files"]
