"""URLs of the example shop."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from shop import views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("newsletter/", views.newsletter, name="newsletter"),
    path("pricing/", views.PricingView.as_view(), name="pricing"),
    path("thanks/", views.thanks, name="thanks"),
    path("login/", auth_views.LoginView.as_view(template_name="shop/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/"), name="logout"),
]
