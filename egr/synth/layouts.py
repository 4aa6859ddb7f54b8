"""Private drawing internals of :mod:`egr.synth`: a canvas, content makers, one layout
module per document kind. Each layout draws on a :class:`Canvas` from a seeded
``random.Random`` and returns ``{question_id: TextSpan of the answer}``."""

from __future__ import annotations

import random
from collections.abc import Callable

from egr.synth.canvas import Canvas, TextSpan
from egr.synth.form import draw_form
from egr.synth.invoice import draw_invoice
from egr.synth.report import draw_report
from egr.synth.table import draw_table

Layout = Callable[[Canvas, random.Random], dict[str, TextSpan]]

LAYOUTS: dict[str, Layout] = {
    "invoice": draw_invoice,
    "form": draw_form,
    "table": draw_table,
    "report": draw_report,
}
