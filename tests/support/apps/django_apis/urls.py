"""URLs of the API project: DRF under ``/drf/``, django-ninja under ``/ninja/``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tests.support.apps.django_apis import drf
from tests.support.apps.django_apis.ninja_api import api

router = SimpleRouter()
router.register("accounts", drf.AccountViewSet, basename="account")


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("", health),
    path("drf/signup/", drf.SignupView.as_view()),
    path("drf/purchase/", drf.PurchaseView.as_view()),
    path("drf/newsletter/", drf.newsletter),
    path("drf/ping/", drf.PingView.as_view()),
    path("drf/", include(router.urls)),
    path("ninja/", api.urls),
]
