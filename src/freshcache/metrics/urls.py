"""``path("metrics/", include("freshcache.metrics.urls"))``: the scrape endpoint at its root."""

from django.urls import path

from .views import metrics

app_name = "freshcache_metrics"
urlpatterns = [path("", metrics, name="metrics")]
