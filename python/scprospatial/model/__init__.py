"""The AnnData-facing RNA->protein model and its file-level entry points (used by the CLI)."""
from ._config import STAGES, ModelConfig
from ._files import MODEL_FILE, impute_file, train_files
from ._model import CHECKPOINT, ScProSpatial
from ._vocab import Vocabulary, build_vocabulary, vocabulary_proteins

__all__ = ["CHECKPOINT", "MODEL_FILE", "STAGES", "ModelConfig", "ScProSpatial", "Vocabulary", "build_vocabulary",
           "impute_file", "train_files", "vocabulary_proteins"]
