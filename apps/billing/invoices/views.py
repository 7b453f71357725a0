from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse

from apps.billing.invoices import rendering, selectors


@login_required
def invoice_page(request: HttpRequest, invoice_id: str) -> HttpResponse:
    """The printable invoice, for members of its tenant whose role reads billing; anyone else gets 404."""
    invoice = selectors.invoice_for_reader(user=request.user, invoice_id=invoice_id)
    if invoice is None:
        raise Http404("No such invoice.")
    return HttpResponse(rendering.render_html(invoice))
