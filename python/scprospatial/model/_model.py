"""The AnnData-facing model: setup, train, predict, embed, save and load (scvi-tools style)."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .. import __version__
from .. import _constants as K
from .._logging import logger
from .._settings import resolve_device, seed_everything
from ..errors import InputError
from ..nn import ScProSpatialModule, ppi_init, read_ppi
from ..train import (
    Batch,
    Trainer,
    TrainState,
    calibrate_scale,
    fit_gene_link,
    interval_coverage,
    load_checkpoint,
    pearson_per_column,
    save_checkpoint,
    z_value,
)
from ._config import STAGES, ModelConfig, check_stages
from ._data import GeneMapping, build_pool, dataset_index, dataset_names, map_protein, split_cells
from ._predict import Predictor, check_genes, resolve_proteins
from ._vocab import GeneLinks, Vocabulary, build_vocabulary, has_rna, panel

MAX_VAL_CELLS = 4096
CHECKPOINT = "checkpoint.pt"


def _as_list(adatas) -> list[ad.AnnData]:
    from ..io import is_in_memory

    return [adatas] if is_in_memory(adatas) else list(adatas)


def _prepared(adatas) -> list[ad.AnnData]:
    """The cohorts in the prepared layout: objects not prepared yet (an in-memory CITE-seq AnnData with ADT counts
    in obsm, a MuData with rna/prot modalities) are prepared into new objects by `scprospatial.io.load`."""
    from ..io import is_prepared, load

    return [a if isinstance(a, ad.AnnData) and is_prepared(a) else load(a) for a in _as_list(adatas)]


class ScProSpatial:
    """RNA -> protein translation with a joint RNA/protein embedding (the scProSpatial method).

    Build one from training cohorts with `ScProSpatial.setup` and `train` it, or read a checkpoint with
    `ScProSpatial.load`; the constructor takes the parts that these assemble.
    """

    def __init__(self, module: ScProSpatialModule, vocab: Vocabulary, config: ModelConfig, datasets: list[str],
                 meta: dict | None = None, device: str = "cpu"):
        self.module, self.vocab, self.config, self.datasets = module.to(device), vocab, config, list(datasets)
        self.meta = meta or {}
        self.device = device
        self.train_state: TrainState | None = None
        # further members of a seed ensemble (module, its metadata), beyond `module`; see _ensemble.py
        self.extra_members: list[tuple[ScProSpatialModule, dict]] = []
        # the prepared training cohorts `setup` registered (scvi-tools style: `train()` needs no data again);
        # never saved with the checkpoint
        self.registered: list[ad.AnnData] | None = None

    @property
    def ensemble_size(self) -> int:
        return 1 + len(self.extra_members)

    def members_as_models(self) -> list[ScProSpatial]:
        """Each member of the ensemble as a model of its own (this model alone when it is not an ensemble)."""
        if not self.extra_members:
            return [self]
        first = {k: v for k, v in self.meta.items() if k != "ensemble"}
        first.update(self.meta["ensemble"]["members"][0])
        out = [ScProSpatial(self.module, self.vocab, self.config, self.datasets, first, self.device)]
        for module, meta in self.extra_members:
            out.append(ScProSpatial(module, self.vocab, self.config, self.datasets, {**first, **meta}, self.device))
        return out

    @classmethod
    def ensemble(cls, models: Sequence[ScProSpatial]) -> ScProSpatial:
        """One model predicting with every model of `models` (same cohorts and vocabulary, different seeds): the
        mean of their predictions, the SD of the mixture of their Gaussians (mean of variances + variance of
        means). Ensembles given are unpacked into their members."""
        from ._ensemble import ensemble_of

        return ensemble_of(models)

    # ------------------------------------------------------------------ construction
    @classmethod
    def setup(cls, adatas, config: ModelConfig | None = None, *, gene_links: GeneLinks | None = None,
              extra_proteins: Sequence[str] | None = None, ppi: str | os.PathLike | None = None,
              seed: int = 0) -> ScProSpatial:
        """Build the vocabularies from the training cohorts and initialise the network (seeded).

        Parameters
        ----------
        adatas
            One training cohort or a list: prepared AnnData (`scprospatial.pp.read`), or in-memory CITE-seq
            objects as they come (an AnnData with raw counts and ADT counts in ``obsm['protein_counts']``, or
            ``obsm['protein_expression']`` + ``uns['protein_names']`` as scvi-tools stores them; a MuData with
            ``rna``/``prot`` modalities), which are prepared into new objects (the inputs are not modified).
        config
            Model configuration (default `ModelConfig()`).
        gene_links
            protein -> coding genes (mapping or callable; default: the shipped vocabulary).
        extra_proteins
            Proteins requestable through their gene link (default: the whole vocabulary).
        ppi
            Protein-protein interaction table to initialise gene embeddings from.
        seed
            Seed of the initialisation.

        Returns
        -------
        An untrained ScProSpatial.
        """
        adatas, config = _prepared(adatas), config or ModelConfig()
        if not adatas:
            raise InputError("no training cohort given")
        vocab = build_vocabulary(adatas, config.n_hvg, gene_links, extra_proteins)
        if not vocab.measured:
            raise InputError("no training cohort has measured protein (obsm['protein']); give a CITE-seq cohort")
        datasets = list(dict.fromkeys(n for i, a in enumerate(adatas) for n in dataset_names(a, i)))
        rng = seed_everything(seed)
        module = _module(vocab, config, len(datasets))
        meta: dict[str, Any] = {"cohorts": [_describe(a, i) for i, a in enumerate(adatas)], "ppi": None}
        if ppi is not None:
            emb, n_linked = ppi_init(read_ppi(ppi), vocab.genes, config.d_model, rng)
            with torch.no_grad():
                module.rna_encoder.id_emb.copy_(torch.from_numpy(emb))
                module.tie_protein_ids()
            meta["ppi"] = {"path": str(ppi), "genes_with_edges": n_linked}
            logger.info("PPI initialisation: %d of %d vocabulary genes have interactions", n_linked, len(vocab.genes))
        model = cls(module, vocab, config, datasets, meta)
        model.registered = adatas
        return model

    @classmethod
    def setup_anndata(cls, adatas, config: ModelConfig | None = None, **kwargs) -> ScProSpatial:
        """`setup` under the name scvi-tools users know: build the model on `adatas` and register them.

        Parameters
        ----------
        adatas
            The training cohorts, as `setup` takes them.
        config
            Model configuration (default `ModelConfig()`).
        **kwargs
            `gene_links`, `extra_proteins`, `ppi`, `seed`: as in `setup`.

        Returns
        -------
        An untrained ScProSpatial whose `train()` (no arguments) trains on the registered cohorts.
        """
        return cls.setup(adatas, config, **kwargs)

    # ------------------------------------------------------------------ training
    def train(self, adatas=None, *, stages: Sequence[str] = STAGES, outdir: str | os.PathLike | None = None,
              resume: bool = False, seed: int = 0, device: str = "auto",
              stop: Callable[[TrainState], bool] | None = None) -> dict:
        """Train the model: the stages of `scprospatial train` (pretrain, align, translate), seeded.

        Parameters
        ----------
        adatas
            The cohorts given to `setup` (in-memory objects are prepared the same way; the inputs are not modified).
            None (default): the cohorts `setup` registered, prepared once.
        stages
            Stages to run, in order (default all three).
        outdir
            With a folder, checkpoint every epoch to ``outdir/checkpoint.pt`` so that ``resume=True`` can go on
            after an interruption; None keeps everything in memory.
        resume
            Continue the training state of this object (or of a loaded checkpoint) instead of starting anew.
        seed
            Seed of the training/validation split, batches and dropout: the same seed gives the same model
            with the same number of CPU threads (other thread counts round sums differently).
        device
            'auto' (CUDA when torch sees a GPU), 'cpu' or 'cuda'.
        stop
            Hook called with the training state after every epoch; returning True interrupts (e.g. in tests).

        Returns
        -------
        dict
            The metrics (also in ``self.meta['metrics']``): seconds, cell counts, each stage's best validation
            losses, ``validation_pearson`` per measured protein, the SD calibration and the gene-link fit, all on
            validation cells held out of the training cells. Empty when `stop` interrupted the training.
        """
        if adatas is None:
            if self.registered is None:
                raise InputError("no training data: give the cohorts to train(), or build the model with "
                                 "ScProSpatial.setup(adatas) first (a loaded checkpoint holds no data)")
            adatas = self.registered
        adatas, stages = _prepared(adatas), check_stages(stages)
        self.to(resolve_device(device))
        pool = build_pool(adatas, self.vocab, self.datasets)
        rng = np.random.default_rng(seed)
        train_idx, val_idx = split_cells(pool, self.config.val_fraction, rng)
        val_idx = np.sort(rng.permutation(val_idx)[:MAX_VAL_CELLS])
        measured = torch.as_tensor(self.vocab.protein_index.get_indexer(self.vocab.measured), dtype=torch.long)
        state = self.train_state if resume and self.train_state is not None else TrainState(stages)
        if state.stages != stages:
            raise InputError(f"cannot resume: checkpoint trains stages {state.stages}, asked for {stages}")
        gen = torch.Generator().manual_seed(seed)
        if not state.rng:
            torch.manual_seed(seed)
        ckpt = None if outdir is None else Path(outdir) / CHECKPOINT
        on_epoch = None if ckpt is None else (lambda s: self.save(ckpt, training_state=s))
        trainer = Trainer(self.module, pool, train_idx, val_idx, measured, self.config, self.device)
        self.train_state = state = trainer.run(state, gen, on_epoch=on_epoch, stop=stop)
        if not state.done:
            return {}
        metrics = self._finish(pool, train_idx, val_idx, measured, state)
        self.meta["metrics"] = metrics
        return metrics

    def _finish(self, pool, train_idx, val_idx, measured, state: TrainState) -> dict:
        """Fit the gene link and the coding genes' support, calibrate the SD scale on the validation cells;
        collect metrics of every stage."""
        metrics: dict = {"seconds": round(state.seconds, 2), "n_cells": int(len(pool)),
                         "n_validation_cells": int(len(val_idx)), "stages": list(state.stages)}
        for stage in state.stages:
            rows = [r for r in state.history if r["stage"] == stage and np.isfinite(r.get("val_loss", np.nan))]
            if rows:
                best = min(rows, key=lambda r: r["val_loss"])
                metrics[stage] = {k: v for k, v in best.items() if k != "stage"}
        val = val_idx[pool.has_rna[val_idx] & pool.has_protein[val_idx]]
        self.meta["scale"] = 1.0
        if "translate" in state.stages and len(val) >= 2:
            self.module.eval()
            b = Batch.of(pool, val, self.device)
            truth, mask = pool.protein[val][:, measured.numpy()], pool.pmask[val][:, measured.numpy()]
            metrics["gene_link_fit"] = self._fit_gene_link(b, measured, truth, mask)
            metrics["coding_gene_support"] = self._fit_support(pool, train_idx, measured)
            with torch.no_grad():
                pred, logvar = self.module.translate(b.rna, b.dataset, measured.to(self.device))
            mean, sd = pred.cpu().numpy(), torch.exp(0.5 * logvar).cpu().numpy()
            scale = calibrate_scale(mean, sd, truth, mask, self.config.coverage)
            self.meta["scale"] = scale
            r = pearson_per_column(mean, truth, mask)
            metrics["calibration"] = {"scale": scale, "nominal": self.config.coverage, "fit_on": "validation",
                                      "coverage_before": interval_coverage(mean, sd, truth,
                                                                           z_value(self.config.coverage), mask)}
            metrics["validation_pearson"] = {p: (None if np.isnan(v) else float(v))
                                             for p, v in zip(self.vocab.measured, r)}
        self.meta["model_id"] = self._fingerprint()
        return metrics

    def _fit_gene_link(self, b, measured: torch.Tensor, truth: np.ndarray, mask: np.ndarray) -> dict:
        """Fit protein ~ a + b * coding-gene RNA (module.link_rna) over the measured proteins' validation
        values (pooled), and its per-cell variance calibrated on held-out-protein residuals
        (train.fit_gene_link): proteins never measured are predicted with it."""
        linked = self.module.has_gene[measured].cpu().numpy()
        with torch.no_grad():
            cell = self.module.rna_encoder(b.rna, b.dataset)
            x = self.module.link_rna(b.rna, cell, measured.to(self.device)).cpu().numpy()
        ok = mask & linked[None, :]
        if ok.sum() < 3:
            return {"fitted": False}
        groups = np.broadcast_to(np.arange(x.shape[1])[None, :], x.shape)
        fit = fit_gene_link(x[ok], truth[ok], groups[ok], self.config.coverage)
        xs, ys = x[ok].astype(np.float64), truth[ok].astype(np.float64)
        resid = ys - fit["intercept"] - fit["slope"] * xs
        self.module.link_fit.copy_(torch.tensor([fit["intercept"], fit["slope"], fit["residual_logvar"]]))
        self.module.link_var.copy_(torch.tensor(fit["link_var"]))
        self.meta["link_calibration"] = {"nominal": self.config.coverage, "fit_on": "validation, held-out protein",
                                         "coverage_held_out_protein": fit["coverage_held_out_protein"],
                                         "n_proteins": fit["n_proteins"]}
        return {"fitted": True, "intercept": fit["intercept"], "slope": fit["slope"],
                "residual_sd": float(resid.std()), "link_var": fit["link_var"],
                "coverage_held_out_protein": fit["coverage_held_out_protein"],
                "pearson": float(np.corrcoef(xs, ys)[0, 1]), "n_values": int(ok.sum())}

    def _fit_support(self, pool, train_idx, measured: torch.Tensor) -> dict:
        """Each measured protein's coding-gene support: the `support_quantile` of its coding-gene RNA over the
        training cells that measured it (beyond it, predictions extend through the gene link)."""
        q = self.config.support_quantile
        if q > 1.0:
            return {"quantile": None}
        link = self.module.queries.link[measured].cpu().numpy().T            # genes x measured
        rows = train_idx[pool.has_rna[train_idx]]
        own = np.asarray(pool.rna[rows] @ link)                              # cells x measured
        seen = pool.pmask[rows][:, measured.numpy()]
        bound = np.full(len(measured), np.inf, dtype=np.float32)
        for j in range(len(measured)):
            if link[:, j].any() and seen[:, j].any():
                bound[j] = np.quantile(own[seen[:, j], j], q)
        self.module.own_support[measured] = torch.from_numpy(bound).to(self.module.own_support.device)
        return {"quantile": q, "bound": {p: (None if not np.isfinite(v) else round(float(v), 4))
                                         for p, v in zip(self.vocab.measured, bound)}}

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for module in (self.module, *(m for m, _ in self.extra_members)):  # one member: as before ensembles
            for k, v in module.state_dict().items():
                h.update(k.encode())
                h.update(v.detach().cpu().numpy().tobytes())
        return f"scprospatial-{h.hexdigest()[:12]}"

    def to(self, device: str) -> ScProSpatial:
        """Move the network to `device` ('cpu', 'cuda', 'cuda:1'; resolved, not 'auto'); returns the model."""
        self.device = device
        self.module.to(device)
        for module, _ in self.extra_members:
            module.to(device)
        return self

    # ------------------------------------------------------------------ inference
    def _predictor(self) -> Predictor:
        extra = tuple((m, float(meta.get("scale", 1.0))) for m, meta in self.extra_members)
        return Predictor(self.module, self.vocab, float(self.meta.get("scale", 1.0)), self.device, extra)

    def dataset_ids(self, adata: ad.AnnData) -> np.ndarray:
        """Each cell's dataset id as the network embeds it: the position of its dataset among the training
        cohorts' (1-based), 0 ('unknown dataset') for cells of any other dataset."""
        return dataset_index(dataset_names(adata), self.datasets)

    def protein_values(self, adata: ad.AnnData, rows=None) -> tuple[np.ndarray, np.ndarray]:
        """obsm['protein'] of `adata` (the cells `rows`, default all) on the model's protein vocabulary:
        (values, measured mask), both cells x vocabulary proteins; proteins outside the vocabulary are left out."""
        return map_protein(adata, self.vocab, rows)

    def predict_chunks(self, adata: ad.AnnData, proteins: Sequence[str], *, batch_size: int = 4096,
                       head_only: bool = False) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray]]:
        """Stream the predictions for RNA cells, `batch_size` cells at a time: yields (rows, joint embedding,
        mean, SD) per chunk, rows a slice of `adata`'s cells, mean and SD cells x `proteins` (canonical
        vocabulary names, as `predict` resolves them). X is read as `rna_rows` describes. head_only: the
        translator head predicts every protein, also those otherwise predicted through the gene link."""
        mapping = self.gene_mapping(adata)
        return self._predictor().chunks(self.rna_rows(adata)[0], adata.n_obs, mapping, self.dataset_ids(adata),
                                        proteins, batch_size, head_only=head_only)

    def gene_mapping(self, adata: ad.AnnData, path=None) -> GeneMapping:
        mapping = GeneMapping.of(adata.var_names, self.vocab)
        info = adata.uns.get(K.UNS)
        check_genes(mapping, self.vocab, path or (info.get("source") if isinstance(info, dict) else None))
        return mapping

    def rna_rows(self, adata: ad.AnnData) -> tuple[Callable, str]:
        """(rows(start, stop) -> log-normalised RNA block, what X held) for the model's inputs.

        X may hold log-normalised values (as `scprospatial.pp.read` prepares them, or scanpy's normalize_total +
        log1p) or raw counts, which are normalised block by block as the training cohorts were (log1p of counts
        scaled to their target sum), with a warning; X itself is never changed. Anything else (scaled values)
        is an InputError saying what to run first.
        """
        from ..preprocess import log1p_library_size, rna_input_state

        if rna_input_state(adata.X) == "lognorm":  # checked even when prepared: X may have been scaled since
            return (lambda a, b: adata.X[a:b]), "log-normalised"
        ts = self._target_sum()
        logger.warning("X looks like raw counts: it is log-normalised for the model (log1p of counts scaled to %g "
                       "per cell, as scprospatial.pp.normalize does); X itself is left unchanged", ts)
        return (lambda a, b: log1p_library_size(adata.X[a:b], ts)), f"raw counts, log1p_library_size {ts:g}"

    def _target_sum(self) -> float:
        """The RNA target sum the training cohorts were normalised with (1e4 when none is recorded)."""
        sums = [c.get("normalisation", {}).get("rna", {}).get("target_sum") for c in self.meta.get("cohorts", [])]
        return float(next((t for t in sums if t), 1e4))

    def predict(self, adata: ad.AnnData, *, proteins: Sequence[str] | None = None, all_proteins: bool = False,
                batch_size: int = 4096, copy: bool = True, key_added: str = K.PROTEIN_PREDICTED,
                min_support: str = "any") -> ad.AnnData | None:
        """Predict proteins (CLR scale) with SDs for RNA cells.

        Parameters
        ----------
        adata
            RNA cells: X log-normalised or raw counts (normalised for the model with a warning, see `rna_rows`;
            X is never changed). Its genes are matched to the model's by name.
        proteins
            Proteins to predict (default: those measured in training).
        all_proteins
            Predict every protein of the vocabulary (through the gene link where never measured).
        batch_size
            Cells per chunk.
        copy
            Return a new AnnData with the predictions (default, for backward compatibility); with copy=False
            write them into `adata` and return None (scanpy convention).
        key_added
            obsm/uns key of the predicted means; the SDs go to ``key_added + '_sd'`` (defaults:
            'protein_predicted', 'protein_predicted_sd'); the embedding to obsm['X_scprospatial'].
        min_support
            Keep only proteins with at least this support: 'measured' (measured in training), 'detected' (also
            those predicted through a coding gene detected in `adata`: count > 0 in >= 10% of its cells) or
            'any' (default). Each protein's support class and expected accuracy go to
            ``uns[key_added]['proteins']`` (see `_reliability.py`).

        Returns
        -------
        The AnnData with the predictions when copy=True, else None.
        """
        names = resolve_proteins(self.vocab, proteins, all_proteins)
        mapping = self.gene_mapping(adata)
        ds = dataset_index(dataset_names(adata), self.datasets)
        rows_of, state = self.rna_rows(adata)
        names, table, dropped = self.support(rows_of, adata.n_obs, mapping, names, min_support, batch_size)
        emb, mean, sd = self._allocate(adata.n_obs, len(names))
        for rows, e, m, s in self._predictor().chunks(rows_of, adata.n_obs, mapping, ds, names, batch_size):
            emb[rows], mean[rows], sd[rows] = e, m, s
        out = adata.copy() if copy else adata
        self.write_predictions(out, names, emb, mean, sd, mapping, ds, key_added=key_added, input_state=state,
                               support=(table, min_support, dropped))
        return out if copy else None

    def support(self, rows_of: Callable, n_obs: int, mapping: GeneMapping, names: Sequence[str],
                min_support: str = "any", batch_size: int = 4096, path=None) -> tuple[list[str], pd.DataFrame,
                                                                                      list[str]]:
        """(proteins kept by `min_support`, their reliability table, proteins dropped) for the input's cells."""
        from ._reliability import check_min_support, detected_fraction, protein_table, support_classes

        keep = check_min_support(min_support, path)
        fraction = detected_fraction(rows_of, n_obs, mapping, self.vocab, names, batch_size)
        table = protein_table(names, support_classes(self.vocab, names, fraction), fraction)
        kept = [p for p, c in zip(names, table[K.SUPPORT]) if c in keep]
        dropped = [p for p in names if p not in set(kept)]
        if dropped:
            logger.info("min_support=%s: %d of %d proteins kept (%d dropped)", min_support, len(kept), len(names),
                        len(dropped))
        if names and not kept:
            raise InputError(f"no requested protein has support {min_support!r} in this input (classes: "
                             f"{', '.join(sorted(set(table[K.SUPPORT])))}); lower --min-support", path)
        return kept, table.loc[kept], dropped

    def _allocate(self, n: int, n_prot: int):
        d = self.module.rna_proj.out_features
        return (np.zeros((n, d), np.float32), np.zeros((n, n_prot), np.float32), np.zeros((n, n_prot), np.float32))

    def prediction_info(self, names: Sequence[str], mapping: GeneMapping, ds: np.ndarray,
                        support: tuple | None = None) -> dict:
        """uns[key_added]. support: (table, min_support, dropped) of `support`, written as
        uns[key_added]['proteins'] and ['reliability']."""
        from ._reliability import reliability_info

        measured = set(self.vocab.measured)
        extra = {}
        if support is not None:
            table, min_support, dropped = support
            extra = {K.PROTEIN_TABLE: table,
                     K.RELIABILITY: reliability_info(min_support, dropped, self.calibration_info(ds))}
        return {**extra, "model_id": self.meta.get("model_id", "untrained"), "scale": "clr",
                "measured_in_training": [p for p in names if p in measured],
                "predicted_via_gene_link": [p for p in names if p not in measured],
                # one row per (protein, coding gene) pair: a table writes as two datasets, where a dict of
                # lists wrote one dataset per protein (16 s of a 62 s impute of 2,943 proteins)
                "gene_links": pd.DataFrame([(p, g) for p in names for g in self.vocab.gene_links.get(p, [])],
                                           columns=["protein", "gene"]),
                "sd_scale": float(self.meta.get("scale", 1.0)), "coverage_nominal": self.config.coverage,
                "n_cells_unknown_dataset": int((ds == 0).sum()), "ensemble_size": self.ensemble_size,
                **mapping.as_dict()}

    def calibration_info(self, ds: np.ndarray) -> dict:
        """What the intervals' calibration covers, for these cells (uns[key]['reliability']['calibration'])."""
        new = int((ds == 0).sum())
        note = ("the intervals are calibrated on cells of the training cohorts: for translator proteins on "
                "validation cells, for gene-link proteins on held-out-protein residuals; the development "
                "coverage per class is in 'expected_accuracy' (coverage90)")
        if new:
            note += (f"; {new} of {len(ds)} input cells belong to a dataset (obs['batch'] or the dataset name) the "
                     "model was not trained on: for a new cohort the intervals are NOT calibrated and cover less "
                     "than the nominal level (see coverage90 of setting new_cohort)")
        return {"calibration": {"nominal": self.config.coverage, "calibrated_for_input": new == 0,
                                "head_sd_scale": float(self.meta.get("scale", 1.0)),
                                "gene_link": self.meta.get("link_calibration", "constant SD (older checkpoint)"),
                                "note": note}}

    def write_predictions(self, adata: ad.AnnData, names, emb, mean, sd, mapping, ds, *,
                          key_added: str = K.PROTEIN_PREDICTED, input_state: str = "log-normalised",
                          support: tuple | None = None) -> None:
        idx = adata.obs_names
        adata.obsm[key_added] = pd.DataFrame(mean, index=idx, columns=list(names))
        adata.obsm[key_added + K.SD_SUFFIX] = pd.DataFrame(sd, index=idx, columns=list(names))
        adata.obsm[K.EMBEDDING] = emb
        adata.uns[key_added] = {**self.prediction_info(names, mapping, ds, support), "input_rna": input_state}

    def embed_rna(self, adata: ad.AnnData, *, batch_size: int = 4096) -> np.ndarray:
        """Joint-space (L2-normalised) embedding of RNA cells."""
        mapping = self.gene_mapping(adata)
        ds = dataset_index(dataset_names(adata), self.datasets)
        emb, _, _ = self._allocate(adata.n_obs, 0)
        for rows, e, _m, _s in self._predictor().chunks(self.rna_rows(adata)[0], adata.n_obs, mapping, ds, [],
                                                          batch_size):
            emb[rows] = e
        return emb

    def embed_protein(self, adata: ad.AnnData, *, batch_size: int = 4096) -> np.ndarray:
        """Joint-space embedding from measured protein (obsm['protein'], e.g. an imaged cell's panel)."""
        if not self.vocab.protein_index.isin(panel(adata)).any():
            raise InputError(f"none of the measured proteins ({', '.join(panel(adata)[:5])}...) is in the "
                             "model's protein vocabulary")
        ds = dataset_index(dataset_names(adata), self.datasets)
        return self._predictor().embed_protein(lambda a, b: map_protein(adata, self.vocab, slice(a, b)),
                                               adata.n_obs, ds, batch_size)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, *, training_state: TrainState | None = None) -> Path:
        """Write the model to one self-describing checkpoint (what `scprospatial train` writes as model.pt).

        Parameters
        ----------
        path
            File to write (atomically: an interrupted save leaves no partial file).
        training_state
            Also store this training state, so that `train` can resume from the file.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        payload = {"version": __version__, "config": self.config.to_dict(), "vocabulary": self.vocab.to_dict(),
                   "datasets": self.datasets, "meta": self.meta, "state_dict": _weights(self.module)}
        if self.extra_members:  # a seed ensemble: the further members' weights and metadata, in member order
            payload["ensemble_members"] = [{"meta": meta, "state_dict": _weights(m)} for m, meta in self.extra_members]
        if training_state is not None:
            payload["training"] = _state_to_dict(training_state)
        return save_checkpoint(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> ScProSpatial:
        """Read a checkpoint written by `save` or by `scprospatial train`.

        Parameters
        ----------
        path
            The checkpoint file, or a folder holding ``model.pt``.
        device
            'auto' (CUDA when torch sees a GPU), 'cpu' or 'cuda'.

        Returns
        -------
        ScProSpatial
            The model, ready to predict (and to resume training when the checkpoint holds a training state).
        """
        device = resolve_device(device)
        ck = load_checkpoint(path)
        config, vocab = ModelConfig.from_dict(ck["config"]), Vocabulary.from_dict(ck["vocabulary"])
        module = _load_module(vocab, config, ck, ck["state_dict"])
        model = cls(module, vocab, config, ck["datasets"], ck.get("meta", {}), device)
        model.extra_members = [(_load_module(vocab, config, ck, m["state_dict"]).to(device), dict(m["meta"]))
                               for m in ck.get("ensemble_members", [])]
        if "training" in ck:
            model.train_state = _state_from_dict(ck["training"])
        return model

    def __repr__(self) -> str:
        return (f"ScProSpatial({len(self.vocab.genes)} genes, {len(self.vocab.proteins)} proteins "
                f"({len(self.vocab.measured)} measured), {len(self.datasets)} datasets, "
                + (f"ensemble of {self.ensemble_size}, " if self.extra_members else "")
                + f"model_id={self.meta.get('model_id', 'untrained')})")


def _weights(module: ScProSpatialModule) -> dict:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def _load_module(vocab: Vocabulary, config: ModelConfig, ck: dict, state_dict: dict) -> ScProSpatialModule:
    module = _module(vocab, config, len(ck["datasets"]))
    state = dict(state_dict)
    state.setdefault("own_support", module.own_support)  # checkpoints before the support bound: no bound
    state.setdefault("link_var", module.link_var)        # before per-cell gene-link variance: the constant one
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError("checkpoint weights do not match its gene/protein vocabulary "
                         f"({str(exc).splitlines()[-1].strip()})", ck["path"]) from exc
    return module


def _describe(adata: ad.AnnData, i: int) -> dict:
    uns = adata.uns.get(K.UNS, {})
    return {"dataset": str(uns.get(K.DATASET, f"dataset{i}")), "kind": str(uns.get(K.KIND, "citeseq")),
            "n_obs": int(adata.n_obs), "has_rna": has_rna(adata), "panel": panel(adata),
            "normalisation": _plain(uns.get(K.NORMALISATION, {}))}


def _plain(obj):
    """Nested dict/list of python scalars (checkpoints load with weights_only=True)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _state_to_dict(s: TrainState) -> dict:
    return {"stages": list(s.stages), "stage_i": s.stage_i, "epoch": s.epoch, "optimizer": s.optimizer,
            "best": s.best, "bad_epochs": s.bad_epochs, "history": _plain(s.history), "rng": s.rng,
            "seconds": s.seconds, "ema": s.ema}


def _state_from_dict(d: dict) -> TrainState:
    return TrainState(tuple(d["stages"]), d["stage_i"], d["epoch"], d["optimizer"], d["best"], d["bad_epochs"],
                      list(d["history"]), d["rng"], d["seconds"], d.get("ema"))


def _module(vocab: Vocabulary, config: ModelConfig, n_datasets: int) -> ScProSpatialModule:
    return ScProSpatialModule(len(vocab.genes), len(vocab.proteins), n_datasets, vocab.link_matrix(),
                              d_model=config.d_model, d_joint=config.d_joint, d_hidden=config.d_hidden,
                              n_blocks=config.n_blocks, dropout=config.dropout, n_bins=config.n_value_bins,
                              gene_inputs=vocab.input_mask(),
                              measured=torch.as_tensor(vocab.protein_index.isin(vocab.measured)))
