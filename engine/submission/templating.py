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
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta
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
    return CompiledDraft(draft).render(variables)


class CompiledDraft:
    """A draft's templates compiled once, rendered for many recipients (campaigns).

    ``field_prefix`` goes before the field names of problems (``template.``)."""

    def __init__(self, draft: Draft, field_prefix: str = "") -> None:
        self.draft = draft
        self._prefix = field_prefix
        self._subject = self._compile(draft.subject, "subject", _PLAIN)
        self._text = None if draft.text is None else self._compile(draft.text, "text", _PLAIN)
        self._html = None if draft.html is None else self._compile(draft.html, "html", _HTML)
        self.variables = frozenset(
            name
            for source, environment in (
                (draft.subject, _PLAIN),
                (draft.text, _PLAIN),
                (draft.html, _HTML),
            )
            if source is not None
            for name in meta.find_undeclared_variables(environment.parse(source))
        )
        """The names the templates use that the variables must give."""

    def render(self, variables: Mapping[str, Any]) -> Draft:
        """The draft rendered with ``variables``; ``TemplateProblem`` naming the field."""
        return self.draft._replace(
            subject=self._render(self._subject, variables, "subject"),
            text=None if self._text is None else self._render(self._text, variables, "text"),
            html=None if self._html is None else self._render(self._html, variables, "html"),
        )

    def _compile(self, source: str, field: str, environment: SandboxedEnvironment) -> Template:
        try:
            return environment.from_string(source)
        except TemplateError as exc:
            message = exc.message or type(exc).__name__
            raise TemplateProblem(self._prefix + field, message) from exc

    def _render(self, template: Template, variables: Mapping[str, Any], field: str) -> str:
        try:
            return template.render(variables)
        except TemplateError as exc:
            message = exc.message or type(exc).__name__
            raise TemplateProblem(self._prefix + field, message) from exc
