"""Templating: a draft's subject and bodies rendered with variables. Pure.

Jinja2's ``SandboxedEnvironment`` (templates from tenants may not reach
Python internals) with ``StrictUndefined`` (a variable the template uses and
the request does not give is an error, not an empty string). HTML is
rendered with autoescaping: a variable's ``<`` becomes ``&lt;`` unless the
template marks it ``|safe``. A syntax error or a missing variable raises
``TemplateProblem`` naming the field it is in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from engine.submission.composition import Draft

_PLAIN = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)
_HTML = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True)


class TemplateProblem(ValueError):
    """A template that does not render; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def render(template: str, variables: Mapping[str, Any], field: str, *, html: bool = False) -> str:
    """``template`` rendered with ``variables``; ``TemplateProblem`` naming ``field``."""
    environment = _HTML if html else _PLAIN
    try:
        return environment.from_string(template).render(variables)
    except TemplateError as exc:
        raise TemplateProblem(field, exc.message or type(exc).__name__) from exc


def render_draft(draft: Draft, variables: Mapping[str, Any]) -> Draft:
    """``draft`` with its subject, text and html rendered with ``variables``."""
    return replace(
        draft,
        subject=render(draft.subject, variables, "subject"),
        text=None if draft.text is None else render(draft.text, variables, "text"),
        html=None if draft.html is None else render(draft.html, variables, "html", html=True),
    )
