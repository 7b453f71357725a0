from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse

from apps.billing.invoices import pdf, rendering, selectors
from apps.billing.invoices.models import Invoice


def _readable(request: HttpRequest, invoice_id: str) -> Invoice:
    invoice = selectors.invoice_for_reader(user=request.user, invoice_id=invoice_id)
    if invoice is None:
        raise Http404("No such invoice.")
    return invoice


@login_required
def invoice_page(request: HttpRequest, invoice_id: str) -> HttpResponse:
    """The printable invoice, for members of its tenant whose role reads billing; anyone else gets 404."""
    return HttpResponse(rendering.render_html(_readable(request, invoice_id)))


@login_required
def invoice_pdf(request: HttpRequest, invoice_id: str) -> HttpResponse:
    """The same invoice as a PDF download, for the same readers."""
    invoice = _readable(request, invoice_id)
    try:
        document = rendering.render_pdf(invoice)
    except pdf.PdfUnavailable as exc:
        return HttpResponse(exc.message, status=exc.status_code, content_type="text/plain; charset=utf-8")
    response = HttpResponse(document, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{rendering.download_name(invoice, "pdf")}"'
    return response
