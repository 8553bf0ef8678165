"""Pure torch modules: order invariance by construction, per-pair translator, losses, PPI initialisation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from scprospatial.errors import InputError
from scprospatial.nn import ProteinQueries, TokenSetEncoder, TranslatorHead, gaussian_nll, info_nce, ppi_init, read_ppi

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tokens(n_cells=5, n_feat=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(n_cells, n_feat, generator=g) * 4
    dense[torch.rand(n_cells, n_feat, generator=g) < 0.5] = 0
    return dense


def test_encoder_is_invariant_to_feature_order():
    torch.manual_seed(0)
    enc = TokenSetEncoder(12, 2, d_model=8, n_blocks=1, dropout=0.0).eval()
    dense = _tokens()
    ds = torch.tensor([0, 1, 2, 1, 0])
    ref = enc(dense.to_sparse(), ds)
    perm = torch.randperm(12)
    enc_p = TokenSetEncoder(12, 2, d_model=8, n_blocks=1, dropout=0.0).eval()
    enc_p.load_state_dict(enc.state_dict())
    with torch.no_grad():
        enc_p.id_emb.copy_(enc.id_emb[perm])          # same genes, stored in another order
    torch.testing.assert_close(enc_p(dense[:, perm].to_sparse(), ds), ref, rtol=0, atol=1e-5)


def test_encoder_ignores_absent_tokens_and_uses_dataset_embedding():
    torch.manual_seed(0)
    enc = TokenSetEncoder(12, 2, d_model=8, n_blocks=1, dropout=0.0).eval()
    dense = _tokens()
    with torch.no_grad():
        enc.dataset_emb.weight.normal_()
        more_features = TokenSetEncoder(15, 2, d_model=8, n_blocks=1, dropout=0.0).eval()
        state = {k: v for k, v in enc.state_dict().items() if k != "id_emb"}
        more_features.load_state_dict({**state, "id_emb": torch.cat([enc.id_emb, torch.randn(3, 8)])}, strict=True)
    padded = torch.cat([dense, torch.zeros(5, 3)], dim=1)  # genes nobody expresses change nothing
    ds = torch.zeros(5, dtype=torch.long)
    torch.testing.assert_close(more_features(padded.to_sparse(), ds), enc(dense.to_sparse(), ds))
    assert not torch.allclose(enc(dense.to_sparse(), ds), enc(dense.to_sparse(), ds + 1))


def test_translator_pairs_are_independent_of_other_queries():
    torch.manual_seed(0)
    head = TranslatorHead(8, 16, dropout=0.0).eval()
    link = torch.zeros(6, 10)
    link[0, 1] = link[2, 3] = 1.0
    queries = ProteinQueries(link, 8)
    gene_emb, cell = torch.randn(10, 8), torch.randn(4, 8)
    rna = torch.rand(4, 10)
    has_gene = link.sum(1) > 0

    def run(proteins):
        p = torch.tensor(proteins)
        return head(cell, queries(gene_emb, p), queries.own_values(rna, p), has_gene[p])

    mean_all, lv_all = run([0, 1, 2, 3, 4, 5])
    mean_sub, lv_sub = run([4, 2])
    torch.testing.assert_close(mean_sub, mean_all[:, [4, 2]], rtol=0, atol=1e-6)
    torch.testing.assert_close(lv_sub, lv_all[:, [4, 2]], rtol=0, atol=1e-6)
    # a protein's own coding-gene RNA is what its row of the link averages
    torch.testing.assert_close(queries.own_values(rna, torch.tensor([0, 2])), rna[:, [1, 3]])


def test_unlinked_unmeasured_queries_come_from_the_gene_link():
    link = torch.zeros(3, 5)
    link[1, [2, 4]] = 0.5
    q = ProteinQueries(link, 4)
    gene_emb = torch.randn(5, 4)
    expected = q.proj(gene_emb[[2, 4]].mean(0, keepdim=True))
    torch.testing.assert_close(q(gene_emb, torch.tensor([1])), expected)


def test_gaussian_nll_ignores_unmeasured_entries():
    mean = torch.randn(4, 3, requires_grad=True)
    logvar = torch.zeros(4, 3, requires_grad=True)
    target = torch.randn(4, 3)
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[:, 1] = False
    loss = gaussian_nll(mean, logvar, target, mask)
    other = target.clone()
    other[:, 1] = 1e6  # garbage where nothing was measured
    assert torch.equal(loss, gaussian_nll(mean, logvar, other, mask))
    loss.backward()
    assert torch.all(mean.grad[:, 1] == 0) and torch.all(logvar.grad[:, 1] == 0)
    assert torch.any(mean.grad[:, 0] != 0)


def test_info_nce_prefers_matched_pairs():
    torch.manual_seed(0)
    a = torch.randn(32, 8)
    lt = torch.tensor(np.log(0.1))
    matched = info_nce(a, a + 0.01 * torch.randn(32, 8), lt)
    shuffled = info_nce(a, a[torch.randperm(32)], lt)
    assert matched < 0.1 < shuffled


def test_ppi_init_pulls_interacting_genes_together(tmp_path):
    genes = [f"G{i}" for i in range(40)]
    edges = pd.DataFrame({"gene_a": ["G0", "G0", "G1"], "gene_b": ["G1", "G2", "G2"], "weight": [1.0, 1.0, 1.0]})
    path = tmp_path / "ppi.tsv"
    edges.to_csv(path, sep="\t", index=False)
    read = read_ppi(path)
    assert list(read.columns) == ["gene_a", "gene_b", "weight"] and len(read) == 3
    emb, n_linked = ppi_init(read, genes, 16, np.random.default_rng(0), alpha=0.9, steps=5)
    assert n_linked == 3 and emb.shape == (40, 16)
    cos = emb @ emb.T
    assert cos[0, 1] > 0.5 and cos[0, 1] > np.abs(cos[0, 3:]).max()
    bad = tmp_path / "bad.tsv"
    bad.write_text("G0\tG1\tnot_a_number\n")
    with pytest.raises(InputError, match="weights"):
        read_ppi(bad)
