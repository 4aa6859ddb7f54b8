"""The reference reader: a small Qwen2-VL that egr trains itself on synthetic business documents.

It is a demonstration model: it reads the values of the documents made by ``egr synth`` (invoices,
claim forms, expense tables, reports) and nothing else. It ships inside the package, in
``save_pretrained`` layout, and loads through :func:`egr_core.loading.load_vlm` like a hub
checkpoint; it is the default ``--model`` of ``egr run``, ``egr ask`` and ``make demo``.

- :func:`default_model_path`: the packaged checkpoint directory.
- :func:`reader_config`: the EGG knobs the reader was trained for (also stored next to the weights
  as ``egr_config.json``).
- ``egr train-reader OUT --minutes M --seed S`` (:mod:`egr.reader.train`) retrains it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

#: EGG knobs for the reader (docs/reader.md has the sweep that chose them): crops at a fixed scale
#: (a letter page's long side at 3960 px, i.e. 5 px/pt, so Courier values show at 18-36 px per
#: character), at most 616 px (22 tokens) on the long side, padded by 30% and at least 10% of the
#: page side (the reader reads a value best with some context: 44% vs 6% exact on oracle crops
#: padded 10% / 7%); one region per round, thresholded at 70% of the map's maximum; the first zoom
#: round is always kept (the reader cannot read the page view, so an answer from it is a guess).
READER_EGG_KNOBS: dict[str, Any] = {
    "sigma": 1.5,
    "threshold": "fraction",
    "threshold_fraction": 0.7,
    "top_k": 1,
    "max_rounds": 3,
    "min_rounds": 1,
    "max_new_tokens": 24,
    "crop_pixels": 616,
    "crop_page_side": 3960,
    "min_crop": 0.1,
    "crop_pad": 0.3,
}


def default_model_path() -> str:
    """The directory of the packaged reader checkpoint (``egr/assets/reader``).

    Raises:
        FileNotFoundError: the package was installed without its assets.
    """
    path = Path(str(resources.files("egr") / "assets" / "reader"))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the reference reader is missing from {path} (no config.json); reinstall egr with its "
            "package data, or train one with `egr train-reader OUT` and pass --model OUT/model"
        )
    return str(path)


def reader_config(model_dir: str | None = None, **overrides: Any) -> Any:
    """The :class:`~egr_core.config.EgrConfig` stored with a reader checkpoint (default: shipped).

    Falls back to :data:`READER_EGG_KNOBS` when the directory has no ``egr_config.json``.
    """
    from egr_core.config import EgrConfig
    from egr_core.loading import checkpoint_egg_defaults

    knobs = dict(READER_EGG_KNOBS)
    knobs.update(checkpoint_egg_defaults(model_dir or default_model_path()))
    knobs.update({k: v for k, v in overrides.items() if v is not None})
    return EgrConfig(**knobs)
