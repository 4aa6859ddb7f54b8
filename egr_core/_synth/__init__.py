"""Private drawing internals of :mod:`egr_core.synth`: a canvas, content makers, one layout
module per document kind. Each layout draws on a :class:`Canvas` from a seeded
``random.Random`` and returns ``{question_id: TextSpan of the answer}``."""

from __future__ import annotations

import random
from collections.abc import Callable

from egr_core._synth.canvas import Canvas, TextSpan
from egr_core._synth.form import draw_form
from egr_core._synth.invoice import draw_invoice
from egr_core._synth.report import draw_report
from egr_core._synth.table import draw_table

Layout = Callable[[Canvas, random.Random], dict[str, TextSpan]]

LAYOUTS: dict[str, Layout] = {
    "invoice": draw_invoice,
    "form": draw_form,
    "table": draw_table,
    "report": draw_report,
}
