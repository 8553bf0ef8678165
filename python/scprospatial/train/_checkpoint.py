"""Self-describing checkpoints, written atomically (a kill never leaves a half-written file)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import InputError
from ..io import atomic_path

FORMAT = "scprospatial-model"
FORMAT_VERSION = 2  # 2: gene-link per-cell variance (link_var) and seed ensembles (ensemble_members); 1 still loads


def save_checkpoint(payload: dict, path: str | os.PathLike) -> Path:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise InputError("model checkpoint not found", path)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise InputError(f"not a readable scprospatial checkpoint: truncated, corrupted or another kind of file "
                         f"({type(exc).__name__})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError("not a scprospatial model checkpoint", path)
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"checkpoint format {payload['format_version']} is newer than this scprospatial "
                         f"understands ({FORMAT_VERSION}); upgrade scprospatial", path)
    payload["path"] = str(path)
    return payload
