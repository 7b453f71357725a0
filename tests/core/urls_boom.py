"""The project's URLs plus views that fail unexpectedly, for the 500 tests (override ROOT_URLCONF)."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import handler404, handler500
from config.urls import urlpatterns as project_urlpatterns

SECRET_DETAIL = "db-password=hunter2-do-not-leak"


class BoomView(APIView):
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        raise RuntimeError(f"unexpected failure with {SECRET_DETAIL}")


def boom_page(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(f"unexpected failure with {SECRET_DETAIL}")


def boom_plain_api(request: HttpRequest) -> Any:
    raise KeyError(SECRET_DETAIL)


urlpatterns = [
    path("api/v1/test-boom", BoomView.as_view()),
    path("api/v1/test-boom-plain", boom_plain_api),
    path("test-boom-page", boom_page),
    *project_urlpatterns,
]

__all__ = ["handler404", "handler500", "urlpatterns"]
