"""PDF passwords: the normalisation PDF 2.0 asks of AES-256 (revision 6) passwords."""

from __future__ import annotations

import unicodedata

__all__ = ["saslprep"]


def saslprep(password: str) -> str:
    """Approximate SASLprep (RFC 4013) as PDF 2.0 requires for AES-256 (R6) passwords.

    Non-ASCII spaces become U+0020, characters "commonly mapped to nothing" are dropped, then NFKC.
    MuPDF does not normalise, so a password such as "SªSL\\u00adprep" only works normalised.
    """
    nothing = {0x00AD, 0x034F, 0x1806, 0x180B, 0x180C, 0x180D, 0x200B, 0x200C, 0x200D, 0x2060}
    nothing |= set(range(0xFE00, 0xFE10)) | {0xFEFF}
    chars = []
    for ch in password:
        if ord(ch) in nothing:
            continue
        chars.append(" " if ch != " " and unicodedata.category(ch) == "Zs" else ch)
    return unicodedata.normalize("NFKC", "".join(chars))
