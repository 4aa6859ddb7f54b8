"""``egr review``: a local web page to check answers against their evidence and record verdicts
in the ``reviews`` table (see :mod:`egr.review.app` and :mod:`egr.review.data`)."""
