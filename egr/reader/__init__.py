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

#: EGG knobs written next to the weights ``egr train-reader`` exports (recipe 3; docs/reader.md has
#: the development-seed sweep that chose them). Crops are legible windows
#: (``egr_core.imaging.legible_crops``): rendered at 5.5 px per point (training jitters the scale
#: over 4.25-6 px/pt; 5.5 read best), at most 616 px (22 tokens) wide and 72 pt tall, centred on
#: the region and the map's peak, one window per answer (three beside each other read far worse).
#: The answer comes from the accepted round whose first answer token the reader is most sure of.
#: The answer step reads the window alone, without the page view (the reader reads a crop alone
#: better), at 5.5 and 0.9 x 5.5 px/pt, keeping the answer both views find likelier.
READER_EGG_KNOBS: dict[str, Any] = {
    "sigma": 1.5,
    "threshold": "fraction",
    "threshold_fraction": 0.5,
    "top_k": 1,
    "max_rounds": 1,
    "min_rounds": 1,
    "max_new_tokens": 24,
    "crop_pixels": 616,
    "legible_scale": 5.5,
    "crop_window_pt": 72.0,
    "crop_pad": 0.1,
    "answer_round": "confident",
    "max_windows": 1,
    "answer_page": False,
    "read_scales": (0.9,),
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
