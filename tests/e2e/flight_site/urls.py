from django.urls import include, path

from tests.e2e.flight_site import views

urlpatterns = [
    path("flight/slow/", views.slow),
    path("flight/aslow/", views.aslow),
    path("flight/bump/", views.bump),
    path("", include("mysite.urls")),
]
