"""HTML to PDF with WeasyPrint, the only module that imports it (docs/billing.md "Exports").

WeasyPrint draws text with Pango (Debian's libpango-1.0-0 and libpangoft2-1.0-0, installed by the Makefile's
setup through scripts/pdf_libs.sh). It is imported when the first PDF is asked for, not with this module:
the processes that never render one (the operator, the workers) start without those libraries, and a web
process without them answers 503 for a PDF instead of failing to start.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import status

from apps.core.errors import DomainError

logger = logging.getLogger(__name__)


class PdfUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "pdf_unavailable"


def _weasyprint() -> Any:
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the Python package is there, Pango is not
        logger.error("PDF rendering unavailable: %s", exc)
        raise PdfUnavailable(
            "PDF rendering is not available on this server; download the invoice as HTML instead."
        ) from exc
    return weasyprint


def html_to_pdf(html: str) -> bytes:
    """The PDF of a self-contained HTML page (styles inline, no images), laid out for print (A4)."""
    weasyprint = _weasyprint()

    # A class of the module imported above (untyped, so mypy cannot see it): no fetch goes out.
    class NoFetching(weasyprint.urls.URLFetcher):  # type: ignore[name-defined]
        """The page needs nothing from outside; whatever a URL in it names is never fetched (no request
        to the network or the file system on behalf of text a customer wrote)."""

        def fetch(self, url: str, headers: Any = None) -> Any:
            raise ValueError(f"not fetched: {url[:80]}")

    document = weasyprint.HTML(string=html, url_fetcher=NoFetching(), media_type="print")
    pdf: bytes = document.write_pdf()
    return pdf
