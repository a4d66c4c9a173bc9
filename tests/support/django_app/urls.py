"""URLs of the Django adapter test project."""

from __future__ import annotations

from django.urls import path

from tests.support.django_app import views

urlpatterns = [
    path("helper/", views.helper),
    path("helper-async/", views.helper_async),
    path("helper-bad-name/", views.helper_bad_name),
    path("decorated/", views.decorated),
    path("decorated-async/", views.decorated_async),
    path("csrf-exempt-outer/", views.csrf_exempt_outer),
    path("csrf-exempt-inner/", views.csrf_exempt_inner),
    path("decorated-raises/", views.decorated_raises),
    path("decorated-literal-metadata/", views.decorated_literal_metadata),
    path("decorated-bad-metadata/", views.decorated_bad_metadata),
    path("decorated-description/", views.decorated_description),
    path("cbv-method/", views.MethodDecoratedView.as_view()),
    path("cbv-dispatch/", views.DispatchDecoratedView.as_view()),
    path("cbv-direct/", views.DirectDispatchView.as_view()),
    path("cbv-class/", views.ClassDecoratedView.as_view()),
    path("cbv-async-method/", views.AsyncMethodDecoratedView.as_view()),
    path("cbv-async-class/", views.AsyncClassDecoratedView.as_view()),
    path("visitor/", views.visitor),
    path("visitor-async/", views.visitor_async),
    path("stream/", views.stream),
    path("stream-async/", views.stream_async),
    path("signup/", views.signup),
    path("create-signup/", views.create_signup),
    path("login/", views.login_view),
]
