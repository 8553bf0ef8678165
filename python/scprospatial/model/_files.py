"""File-level entry points the CLI calls: train_files and impute_file (streams over cells)."""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from .. import _constants as K
from .._logging import logger
from .._settings import resolve_device, scoped_threads
from ..errors import InputError
from ..io import atomic_path, write_h5ad, write_table, write_text
from ..train import TrainState
from ._config import STAGES, ModelConfig, check_stages
from ._data import GeneMapping, dataset_index, dataset_names
from ._model import CHECKPOINT, ScProSpatial
from ._predict import check_genes, resolve_proteins

MODEL_FILE, METRICS_FILE, CURVES_FILE = "model.pt", "metrics.json", "training_curves.csv"


def load_input(path: str | os.PathLike, kind: str | None = None) -> ad.AnnData:
    """Any supported layout, prepared by scprospatial.io.load (prepared files are read as they are)."""
    from ..io import load

    return load(path, kind=kind)


@scoped_threads
def train_files(inputs: Sequence[str | os.PathLike], outdir: str | os.PathLike, *, stages=STAGES,
                resume: bool = False, seed: int = 0, device: str = "auto", threads: int | None = None,
                epochs: int | None = None, ppi: str | os.PathLike | None = None,
                config: ModelConfig | None = None, init_from: str | os.PathLike | None = None,
                ensemble: int = 1) -> Path:
    """Train on the cohorts in `inputs`; writes outdir/model.pt, metrics.json and training_curves.csv.

    With ensemble K > 1, trains K models on the same cohorts with seeds seed, seed+1, ..., seed+K-1 and writes
    them as one seed-ensemble checkpoint (see ScProSpatial.ensemble); not with resume or init_from.

    With resume, continues from outdir/checkpoint.pt (written every epoch) and ends where an uninterrupted
    run with the same seed ends; a finished run (model.pt, no checkpoint) is returned as it is.
    With init_from (a model.pt of earlier stages), runs `stages` from where that checkpoint stopped:
    pretrain, align and translate in three calls end exactly where one call of all three ends
    (same seed, same cohorts); a stage whose prerequisite the checkpoint has not done is refused.
    model.pt records the stages done (meta['stages_done']), the seed and the final training state.
    """
    if threads is None:
        # The model's ops are small: extra torch threads mostly spin. Measured on MALT (all three stages,
        # 2-core machine): 27 s with 1 thread, 55 s with 2. --threads N still sets N. Restored after the call.
        import torch

        torch.set_num_threads(1)
    if ensemble != 1:
        return _train_ensemble(inputs, outdir, ensemble, stages=stages, resume=resume, seed=seed, device=device,
                               epochs=epochs, ppi=ppi, config=config, init_from=init_from)
    outdir = Path(outdir)
    final, ckpt = outdir / MODEL_FILE, outdir / CHECKPOINT
    if resume and final.is_file() and not ckpt.is_file():
        logger.info("%s is already trained; nothing to resume", final)
        return final
    stages = check_stages(stages)
    device = resolve_device(device)  # --device cuda without a GPU: refused before any cohort is read
    if ppi is not None:  # checked before the cohorts are read and prepared
        from ..nn import read_ppi

        read_ppi(ppi)
    if init_from is not None:
        from ..train import load_checkpoint

        load_checkpoint(init_from)
    adatas = [load_input(p) for p in inputs]
    _check_trainable(inputs, adatas)
    start = _continue_from(init_from, stages, seed, epochs, adatas, device) if init_from is not None else None
    plan = stages if start is None else check_stages((*start.meta["stages_done"], *stages))
    if resume and ckpt.is_file():
        model = ScProSpatial.load(ckpt, device=device)
        _check_same_cohorts(model, adatas, ckpt)
        _check_same_run(model, (config or ModelConfig()).with_epochs(epochs), seed, ckpt)
        logger.info("resuming from %s", ckpt)
    elif start is not None:
        model = start
        logger.info("continuing from %s (done: %s)", init_from, ", ".join(start.meta["stages_done"]))
    else:
        model = ScProSpatial.setup(adatas, (config or ModelConfig()).with_epochs(epochs), ppi=ppi, seed=seed)
        model.meta["seed"] = seed  # in every checkpoint, so --resume can refuse another seed
    metrics = model.train(adatas, stages=plan, outdir=outdir, resume=resume or start is not None, seed=seed,
                          device=device)
    model.meta.update(inputs=[str(p) for p in inputs], stages_done=list(plan), seed=seed)
    model.save(final, training_state=model.train_state)
    summary = {"model_id": model.meta["model_id"], "seed": seed, "n_genes": len(model.vocab.genes),
               "n_proteins": len(model.vocab.proteins), "measured_in_training": model.vocab.measured,
               "cohorts": model.meta["cohorts"], **metrics}
    write_text(json.dumps(summary, indent=2, default=float) + "\n", outdir / METRICS_FILE)
    assert model.train_state is not None  # set by model.train
    write_table(pd.DataFrame(model.train_state.history), outdir / CURVES_FILE, index=False)
    ckpt.unlink(missing_ok=True)
    return final


def _train_ensemble(inputs, outdir, k: int, *, stages, resume: bool, seed: int, device: str, epochs: int | None,
                    ppi, config: ModelConfig | None, init_from) -> Path:
    """K members with seeds seed..seed+K-1 (each trained as `train_files` trains one), one checkpoint."""
    if k < 1:
        raise InputError(f"--ensemble must be >= 1, got {k}")
    if resume or init_from is not None:
        raise InputError("--ensemble trains its members in one run: it cannot --resume or --init-from "
                         "(train again into a new --outdir)")
    stages = check_stages(stages)
    if ppi is not None:
        from ..nn import read_ppi

        read_ppi(ppi)
    adatas = [load_input(p) for p in inputs]
    _check_trainable(inputs, adatas)
    members, curves = [], []
    for i in range(k):
        s = seed + i
        logger.info("ensemble member %d of %d (seed %d)", i + 1, k, s)
        model = ScProSpatial.setup(adatas, (config or ModelConfig()).with_epochs(epochs), ppi=ppi, seed=s)
        model.meta["seed"] = s
        model.train(adatas, stages=stages, outdir=None, seed=s, device=device)
        model.meta.update(inputs=[str(p) for p in inputs], stages_done=list(stages))
        members.append(model)
        assert model.train_state is not None  # set by train
        curves.append(pd.DataFrame(model.train_state.history).assign(member=i, seed=s))
    model = ScProSpatial.ensemble(members)
    model.meta["seed"] = seed
    outdir = Path(outdir)
    final = model.save(outdir / MODEL_FILE)
    summary = {"model_id": model.meta["model_id"], "seed": seed, "ensemble_size": k,
               "n_genes": len(model.vocab.genes), "n_proteins": len(model.vocab.proteins),
               "measured_in_training": model.vocab.measured, "cohorts": model.meta["cohorts"],
               "seconds": round(sum(m.meta["metrics"].get("seconds", 0.0) for m in members), 2),
               "members": [{"seed": m.meta["seed"], "model_id": m.meta["model_id"], **m.meta["metrics"]}
                           for m in members]}
    write_text(json.dumps(summary, indent=2, default=float) + "\n", outdir / METRICS_FILE)
    write_table(pd.concat(curves, ignore_index=True), outdir / CURVES_FILE, index=False)
    return final


def _continue_from(path, stages: tuple[str, ...], seed: int, epochs: int | None, adatas,
                   device: str) -> ScProSpatial:
    """The model of `path` set up to run `stages` next, as if one run had gone on (InputError if it cannot)."""
    model = ScProSpatial.load(path, device=device)
    path = Path(path)
    _check_same_cohorts(model, adatas, path)
    done, state = tuple(model.meta.get("stages_done", ())), model.train_state
    if not done or state is None or not state.done:
        raise InputError("records no finished training stages (write it with `scprospatial train --stages ...`)",
                         path)
    first = STAGES.index(stages[0])
    if set(stages) & set(done) or STAGES.index(done[-1]) > first:
        raise InputError(f"cannot run {','.join(stages)} after {','.join(done)}: stages run once, in the order "
                         f"{','.join(STAGES)}", path)
    if STAGES[first - 1] not in done:
        raise InputError(f"stage {stages[0]} needs {STAGES[first - 1]} first; this checkpoint has done only "
                         f"{','.join(done)}", path)
    if model.meta.get("seed") != seed:
        raise InputError(f"trained with --seed {model.meta.get('seed')}, got --seed {seed}: every stage of one "
                         "model uses the same seed", path)
    model.config = model.config.with_epochs(epochs)
    model.train_state = TrainState((*done, *stages), stage_i=len(done), history=list(state.history),
                                   rng=state.rng, seconds=state.seconds)
    return model


MIN_TRAIN_CELLS = 10


def _check_trainable(inputs, adatas) -> None:
    """Imaging tables have no genes, and a handful of cells cannot be split into training and validation."""
    for path, a in zip(inputs, adatas):
        if a.uns[K.UNS][K.KIND] == "spatial":
            raise InputError("is a spatial (imaging) table; train needs scRNA-seq or CITE-seq cohorts", path)
    n = sum(a.n_obs for a in adatas if K.PROTEIN in a.obsm)
    where = inputs[0] if len(inputs) == 1 else None
    if n == 0:
        raise InputError("no cohort has measured protein (obsm['protein']); give a CITE-seq cohort", where)
    if n < MIN_TRAIN_CELLS:
        raise InputError(f"too few cells with measured protein to train: {n} (at least {MIN_TRAIN_CELLS})", where)


def _check_same_run(model: ScProSpatial, config: ModelConfig, seed: int, path) -> None:
    """--resume goes on with the interrupted run's seed and epochs, or not at all."""
    if model.meta.get("seed", seed) != seed:
        raise InputError(f"checkpoint was started with --seed {model.meta['seed']}, got --seed {seed}: resume "
                         "with the same seed, or train into another --outdir", path)
    was = [model.config.epochs(s) for s in STAGES]
    now = [config.epochs(s) for s in STAGES]
    if was != now:
        shown = lambda e: str(e[0]) if len(set(e)) == 1 else ",".join(map(str, e))  # noqa: E731
        raise InputError(f"checkpoint was started with epochs {shown(was)} per stage, this run asks for "
                         f"{shown(now)}: resume with the same --epochs, or train into another --outdir", path)


def _check_same_cohorts(model: ScProSpatial, adatas, path) -> None:
    was = [(c["dataset"], c["n_obs"]) for c in model.meta.get("cohorts", [])]
    now = [(c["dataset"], c["n_obs"]) for c in (_cohort(a, i) for i, a in enumerate(adatas))]
    if was != now:
        raise InputError(f"checkpoint was trained on {was}, inputs are {now}: cannot go on with other cohorts", path)


def _cohort(a: ad.AnnData, i: int) -> dict:
    from ._model import _describe

    return _describe(a, i)


def impute_file(model, input: str | os.PathLike, out: str | os.PathLike, *, proteins: Sequence[str] | None = None,
                all_proteins: bool = False, device: str = "auto", batch_size: int = 4096,
                min_support: str = "any") -> Path:
    """Predict proteins for the RNA cells in `input`, write `out` (.h5ad) atomically.

    A prepared .h5ad is read backed and processed `batch_size` cells at a time, predictions are written
    chunk by chunk into a copy of the input, so memory does not grow with the number of cells.
    min_support: keep only proteins with this support or better ('measured', 'detected', 'any'; see
    ScProSpatial.predict); every protein's support and expected accuracy go to uns['protein_predicted'].
    """
    from ._reliability import check_min_support

    check_min_support(min_support, "--min-support")
    if not isinstance(model, ScProSpatial):
        model = ScProSpatial.load(model, device=device)
    else:
        model.to(resolve_device(device))
    names = resolve_proteins(model.vocab, proteins, all_proteins, input)
    if _is_prepared_h5ad(input):
        return _impute_backed(model, Path(input), Path(out), names, batch_size, min_support)
    adata = load_input(input, kind="rna")
    model.predict(adata, proteins=names, batch_size=batch_size, copy=False, min_support=min_support)
    return write_h5ad(adata, out)


def _is_prepared_h5ad(path) -> bool:
    path = Path(path)
    if path.suffix != ".h5ad" or not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            if f"uns/{K.UNS}/{K.KIND}" not in f or f"uns/{K.UNS}/{K.NORMALISATION}" not in f:
                return False
            kind = f[f"uns/{K.UNS}/{K.KIND}"][()]
    except OSError:
        return False
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind == "spatial":
        raise InputError("impute needs RNA cells; this is a spatial (imaging) table", path)
    return True


def _impute_backed(model: ScProSpatial, path: Path, out: Path, names: list[str], batch_size: int,
                   min_support: str = "any") -> Path:
    from anndata.io import write_elem

    src = ad.read_h5ad(path, backed="r")
    try:
        mapping = GeneMapping.of(src.var_names, model.vocab)
        check_genes(mapping, model.vocab, path)
        ds = dataset_index(dataset_names(src), model.datasets)
        rows_of = lambda a, b: _finite_rows(src.X[a:b], path)  # noqa: E731
        names, table, dropped = model.support(rows_of, src.n_obs, mapping, names, min_support, batch_size, path)
        n, d = src.n_obs, model.module.rna_proj.out_features
        with atomic_path(out) as tmp:
            shutil.copyfile(path, tmp)
            with h5py.File(tmp, "r+") as f:
                for key in (K.PROTEIN_PREDICTED, K.PROTEIN_PREDICTED_SD, K.EMBEDDING):
                    if key in f["obsm"]:
                        del f["obsm"][key]
                if K.PROTEIN_PREDICTED in f["uns"]:
                    del f["uns"][K.PROTEIN_PREDICTED]
                index = np.asarray(src.obs_names, dtype=object)
                mean_cols = _frame(f["obsm"], K.PROTEIN_PREDICTED, index, names, write_elem)
                sd_cols = _frame(f["obsm"], K.PROTEIN_PREDICTED_SD, index, names, write_elem)
                emb = f["obsm"].create_dataset(K.EMBEDDING, shape=(n, d), dtype="f4")
                emb.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
                chunks = model._predictor().chunks(rows_of, n, mapping, ds, names, batch_size)
                for rows, e, m, s in chunks:
                    emb[rows] = e
                    for j in range(len(names)):
                        mean_cols[j][rows] = m[:, j]
                        sd_cols[j][rows] = s[:, j]
                info = model.prediction_info(names, mapping, ds, (table, min_support, dropped))
                write_elem(f["uns"], K.PROTEIN_PREDICTED, info)
    finally:
        src.file.close()
    logger.info("imputed %d proteins for %d cells -> %s", len(names), n, out)
    return out


def _finite_rows(x, path):
    """A block of a prepared matrix read from disk, checked: NaN in gives NaN out, so refuse it."""
    from ..preprocess import check_finite

    check_finite(x, path, "prepared values (X)", allow_negative=True)
    return x


def _frame(parent: h5py.Group, key: str, index: np.ndarray, columns: list[str], write_elem) -> list:
    """An empty float32 DataFrame element (anndata encoding) whose columns are filled chunk by chunk."""
    g = parent.create_group(key)
    g.attrs.update({"_index": "_index", "column-order": np.asarray(columns, dtype=object),
                    "encoding-type": "dataframe", "encoding-version": "0.2.0"})
    write_elem(g, "_index", index)
    cols = []
    for c in columns:
        dset = g.create_dataset(c, shape=(len(index),), dtype="f4")
        dset.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
        cols.append(dset)
    return cols
