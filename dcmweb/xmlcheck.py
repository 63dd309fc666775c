"""Whether bytes a server sent are one well-formed XML document, read safely.

The bytes are untrusted: a document type declaration is refused before its entities are
read (no "billion laughs", no external entity fetched), as DICOM Native XML
(PS3.19 A.1) has none. Expat, in the standard library, needs no handler to check the rest.
"""

from __future__ import annotations

from xml.parsers import expat


class _Refused(Exception):
    """Raised from inside expat, for what a safe reader does not read."""


def _refuse_doctype(*_: object) -> None:
    raise _Refused("holds a document type declaration (refused: it may declare entities)")


def xml_problem(document: bytes) -> str | None:
    """Why ``document`` is not one well-formed XML document without a DTD ("is not
    well-formed XML (...)"), or None."""
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse_doctype
    try:
        parser.Parse(document, True)
    except _Refused as exc:
        return str(exc)
    except expat.ExpatError as exc:
        return f"is not well-formed XML ({exc})"
    return None
