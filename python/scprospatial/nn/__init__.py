"""Pure torch modules: token-set encoders, protein queries, translator head, losses, PPI initialisation."""
from ._encoders import FeatureDecoder, ResidualBlock, TokenSetEncoder, ValueBasis
from ._heads import ProteinQueries, TranslatorHead
from ._losses import gaussian_nll, info_nce, masked_mse
from ._module import ScProSpatialModule
from ._ppi import ppi_init, read_ppi

__all__ = ["FeatureDecoder", "ProteinQueries", "ResidualBlock", "ScProSpatialModule", "TokenSetEncoder",
           "TranslatorHead", "ValueBasis", "gaussian_nll", "info_nce", "masked_mse", "ppi_init", "read_ppi"]
from ._sparse import dense_tokens, drop_tokens, sparse_tensor  # noqa: E402

__all__ += ["dense_tokens", "drop_tokens", "sparse_tensor"]
