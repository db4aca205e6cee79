"""A Jinja2 extension with the semantics of ``{% cachefresh %}``.

::

    # settings.py, in the Jinja2 backend's OPTIONS
    "extensions": ["freshcache.jinja2.FreshcacheExtension"]

    {% cachefresh "comments", post.pk %} … {% endcachefresh %}

The template also gets ``freshcache_placeholder(name)`` for registered placeholders. The
fragment finds the request in the context (Django's Jinja2 backend puts it there).
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.runtime import Context
from markupsafe import Markup

from .http.fragments import read_captured, render_fragment
from .http.placeholders import placeholder

__all__ = ["FreshcacheExtension"]


class FreshcacheExtension(Extension):
    """``{% cachefresh "name", value, … %}…{% endcachefresh %}``"""

    tags = {"cachefresh"}

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.globals.setdefault("freshcache_placeholder", _placeholder_global)

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        args = [parser.parse_expression()]
        while parser.stream.skip_if("comma"):
            args.append(parser.parse_expression())
        body = parser.parse_statements(("name:endcachefresh",), drop_needle=True)
        origin = nodes.Const(f"{parser.name or parser.filename or ''}:{lineno}")
        call = self.call_method(
            "_cache",
            [nodes.ContextReference(), origin, args[0], nodes.List(args[1:])],
        )
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _cache(
        self, context: Context, origin: str, name: Any, values: list[Any], caller: Any
    ) -> Markup:
        request = context.get("request")
        everything = context.get_all()

        def render() -> str:
            if request is not None:  # inside the fragment's guard
                read_captured(everything, request)
            return str(caller())

        text = render_fragment(
            str(name), values, origin, request, render, context_values=everything.values()
        )
        return Markup(text)


def _placeholder_global_impl(context: Context, name: str) -> Markup:
    return Markup(placeholder(context.get("request"), name))


try:  # jinja2 >= 3.0
    from jinja2 import pass_context

    _placeholder_global = pass_context(_placeholder_global_impl)
except ImportError:  # pragma: no cover
    _placeholder_global = _placeholder_global_impl
