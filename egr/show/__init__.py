"""The reviewer's picture of one answer: the page with the relevance heatmap, the numbered
evidence boxes, the crops beside it, and the question, answer and evidence text.

Data comes from the store's SQL views (:func:`load_show_data`); the page image is re-rendered
from the PDF named by the documents table. The heatmap colours are computed here with NumPy (no
plotting library).

Modules: :mod:`.data` (what to show, from the store), :mod:`.pdf` (page and clips from the PDF),
:mod:`.paint` (the picture).
"""

from egr.show.data import (
    EvidenceItem,
    GridItem,
    ShowData,
    ShowError,
    load_answer_data,
    load_show_data,
    resolve_doc,
)
from egr.show.paint import (
    BOX_COLORS,
    ShowLayout,
    box_color,
    colorize,
    draw_boxes,
    draw_page,
    heat_overlay,
    prepare_page,
    render_show,
)
from egr.show.pdf import clip_image, page_image

__all__ = [
    "BOX_COLORS",
    "EvidenceItem",
    "GridItem",
    "ShowData",
    "ShowError",
    "ShowLayout",
    "box_color",
    "clip_image",
    "colorize",
    "draw_boxes",
    "draw_page",
    "heat_overlay",
    "load_answer_data",
    "load_show_data",
    "page_image",
    "prepare_page",
    "render_show",
    "resolve_doc",
]
