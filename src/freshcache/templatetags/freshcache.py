"""``{% load freshcache %}``: the ``{% cachefresh %}`` block and the ``{% placeholder %}`` tag.

::

    {% load freshcache %}
    {% cachefresh "comments" post.pk %}
      {% for comment in post.comments.all %}…{% endfor %}
    {% endcachefresh %}

The block is cached until something it read changes; see ``freshcache.http.fragments``.
``{% placeholder "name" %}`` outputs a registered placeholder (``register_placeholder``): filled
per request even inside a cached page or fragment.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.base import FilterExpression, NodeList, Parser, Token
from django.utils.safestring import SafeString, mark_safe

from ..http.fragments import guarded_values, render_fragment
from ..http.placeholders import placeholder
from ..outcome import page_outcome

register = template.Library()


def _request(context: template.Context) -> Any:
    return getattr(context, "request", None) or context.get("request")


class CacheFreshNode(template.Node):
    def __init__(
        self, nodelist: NodeList, name: FilterExpression, values: list[FilterExpression]
    ) -> None:
        self.nodelist = nodelist
        self.name = name
        self.values = values

    def render(self, context: template.Context) -> SafeString:
        name = str(self.name.resolve(context))
        values = [v.resolve(context) for v in self.values]
        origin = getattr(self, "origin", None)
        where = getattr(origin, "template_name", None) or getattr(origin, "name", "")
        token = getattr(self, "token", None)
        line = getattr(token, "lineno", 0)
        request = _request(context)
        flat = context.flatten()

        def render() -> str:
            # Inside the fragment's guard: values the context processors took from the request
            # before it are replaced by guarded ones, so reading them is seen.
            overrides = guarded_values(flat, request) if request is not None else {}
            if not overrides:
                return self.nodelist.render(context)
            with context.push(**overrides):
                return self.nodelist.render(context)

        text = render_fragment(
            name, values, f"{where}:{line}", request, render, context_values=flat.values()
        )
        return mark_safe(text)  # rendered by this template with its own autoescaping


@register.tag("cachefresh")
def do_cachefresh(parser: Parser, token: Token) -> CacheFreshNode:
    """``{% cachefresh "name" var1 var2 … %}…{% endcachefresh %}``"""
    bits = token.split_contents()
    if len(bits) < 2:
        raise template.TemplateSyntaxError(
            f"'{bits[0]}' takes at least one argument: the fragment's name"
        )
    nodelist = parser.parse(("endcachefresh",))
    parser.delete_first_token()
    return CacheFreshNode(
        nodelist, parser.compile_filter(bits[1]), [parser.compile_filter(b) for b in bits[2:]]
    )


@register.simple_tag(takes_context=True, name="placeholder")
def placeholder_tag(context: template.Context, name: str) -> SafeString:
    """``{% placeholder "name" %}``: a registered per-request placeholder."""
    return mark_safe(placeholder(_request(context), name))


@register.simple_tag(takes_context=True, name="page_outcome")
def page_outcome_tag(context: template.Context) -> Any:
    """``{% page_outcome as outcome %}``: the outcome of the page that served this request
    (``freshcache.page_outcome``), for a template rendered *after* it, e.g. by a middleware
    around the page cache; ``None`` in the page's own template (its outcome is not known yet).
    """
    request = _request(context)
    return None if request is None else page_outcome(request)
