"""Campaign recipient rows checked as they stream in, and the template compiled once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from engine.campaigns.recipients import RecipientListError, csv_rows, json_items, json_rows
from engine.campaigns.service import compiled_template
from engine.model import CampaignRecipient, CampaignTemplate
from engine.provisioning import Invalid
from engine.provisioning.suppression_csv import BadRow, CsvHeaderError
from engine.submission.templating import TemplateProblem


def test_csv_columns_besides_the_email_are_variables() -> None:
    lines = [
        "Email,first_name,City\n",
        "Ann@Dest.example,Ann,Oslo\n",
        "\n",
        "bob@dest.example,Bob,\n",
    ]
    assert list(csv_rows(lines, {"first_name"})) == [
        CampaignRecipient(0, "Ann@Dest.example", {"first_name": "Ann", "city": "Oslo"}),
        CampaignRecipient(0, "bob@dest.example", {"first_name": "Bob", "city": ""}),
    ]


def test_bad_csv_rows_name_their_line_and_why() -> None:
    lines = ["email,name\n", "no-at-sign,X\n", "ok@dest.example\n", "a b@dest.example,Y\n"]
    assert list(csv_rows(lines, {"name"})) == [
        BadRow(2, "no-at-sign,X", "recipient domain must be a fully qualified domain name"),
        BadRow(3, "ok@dest.example", "missing variable name"),
        BadRow(4, "a b@dest.example,Y", "contains white space"),
    ]


def test_a_csv_without_an_email_column_is_refused_whole() -> None:
    with pytest.raises(CsvHeaderError, match="email"):
        list(csv_rows(["name,city\n", "x,y\n"], set()))


def test_json_rows_are_checked_the_same_way() -> None:
    items: list[dict[str, Any]] = [{"email": "ann@dest.example", "variables": {"n": 1}}]
    items.append({"email": "x"})
    [ann, bad] = list(json_rows(items, {"n"}))
    assert ann == CampaignRecipient(0, "ann@dest.example", {"n": 1})
    assert isinstance(bad, BadRow)
    assert bad.line == 1


LIST = (
    ' [ {"email": "ann@dest.example", "variables": {"n": 12345, "s": "a, b ] c"}},\n'
    '{"email":"bob@dest.example"} ,{"email": "c\\u00e9@dest.example", "variables": {}}]\n'
)


def chunked(text: str, size: int) -> Iterator[str]:
    return (text[i : i + size] for i in range(0, len(text), size))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16, 1000])
def test_a_json_list_is_read_item_by_item_whatever_its_chunks(size: int) -> None:
    assert list(json_items(chunked(LIST, size))) == json.loads(LIST)
    assert list(json_items(chunked("[ ]", size))) == []


def test_json_items_come_as_they_are_read_not_after_the_list() -> None:
    read: list[str] = []

    def chunks() -> Iterator[str]:
        for chunk in ['[{"email": "a@d.example"},', '{"email": "b@d.example"}', "]"]:
            read.append(chunk)
            yield chunk

    items = json_items(chunks())
    assert next(items) == {"email": "a@d.example"}
    assert read == ['[{"email": "a@d.example"},']  # the rest not read yet
    assert list(items) == [{"email": "b@d.example"}]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ('{"email": "a@d.example"}', "body", "a JSON list of recipients"),
        ("", "body", "a JSON list of recipients"),
        ('[{"email": "a@d.example"}', "body", "not JSON"),
        ('[{"email": "a@d.example"} {"email": "b@d.example"}]', "body", "not JSON"),
        ('[{"email": "a@d.example"}, oops]', "body", "not JSON"),
        ('[{"email": "a@d.example"}] x', "body", "not JSON"),
        ('[{"email": "a@d.example"}, "b@d.example"]', "[1]", "an object"),
        ('[{"email": "a@d.example", "variables": [1]}]', "[0].variables", "an object"),
    ],
)
def test_a_json_list_that_cannot_be_read_names_where(text: str, field: str, message: str) -> None:
    for size in (1, 4, 1000):
        with pytest.raises(RecipientListError, match=message) as problem:
            list(json_items(chunked(text, size)))
        assert problem.value.field == field


def test_the_template_is_compiled_once_and_says_what_it_needs() -> None:
    template = CampaignTemplate(
        "news@acme.example", "Hi {{ name }}", html="<p>{{ name }} {{ city }}</p>", text="x"
    )
    compiled = compiled_template(template)
    assert compiled.variables == {"name", "city"}
    draft = compiled.render({"name": "<Ann>", "city": "Oslo"})
    assert (draft.subject, draft.html) == ("Hi <Ann>", "<p>&lt;Ann&gt; Oslo</p>")
    with pytest.raises(TemplateProblem) as missing:
        compiled.render({"name": "Ann"})
    assert missing.value.field == "template.html"


def test_a_template_that_does_not_compile_names_its_field() -> None:
    broken = CampaignTemplate("news@acme.example", "Hi", text="{% if %}")
    with pytest.raises(Invalid) as problem:
        compiled_template(broken)
    assert problem.value.field == "template.text"
    with pytest.raises(Invalid) as empty:
        compiled_template(CampaignTemplate("news@acme.example", "Hi"))
    assert empty.value.field == "template.text"


def test_the_sandbox_keeps_templates_from_python_internals() -> None:
    sneaky = CampaignTemplate("news@acme.example", "{{ ''.__class__.__mro__ }}", text="x")
    with pytest.raises(TemplateProblem):
        compiled_template(sneaky).render({})
