"""The lean ``POST /v1/messages`` reads a body as the route does: wherever pydantic's JSON
mode takes a body, the ``json`` module and validation (FastAPI's way) take it too and
give the same message."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from admin_api.routes.messages import MessageIn
from admin_api.send_route import _message

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
fields = st.fixed_dictionaries(
    {"from": st.sampled_from(["news@acme.example", {"email": "news@acme.example", "name": "N"}])},
    optional={
        "to": st.lists(st.sampled_from(["a@b.example", {"email": "c@d.example"}]), max_size=2),
        "subject": st.text(max_size=20),
        "text": st.text(max_size=20) | st.integers(),
        "variables": st.dictionaries(st.text(max_size=5), values, max_size=3),
        "priority": st.sampled_from(["bulk", "5", 5, 10, True, None]),
        "send_at": st.sampled_from(["2030-01-01T00:00:00Z", "2030-01-01", 1893456000, "x"]),
        "tags": st.lists(st.text(max_size=5), max_size=2),
        "surprise": values,
    },
)


def _texts(document: dict[str, Any]) -> st.SearchStrategy[bytes]:
    text = json.dumps(document, ensure_ascii=False)
    return st.sampled_from(
        [
            text.encode(),
            json.dumps(document).encode(),
            text.replace(", ", ",\t").encode(),
            f"\ufeff{text}".encode(),
            text.encode()[:-1],
            f"{text} x".encode(),
            text.replace("1", "01").encode(),
            text.replace("}", ', "from": "x@y.example"}', 1).encode(),
            text.encode("utf-16"),
        ]
    )


@settings(max_examples=400, deadline=None)
@given(fields.flatmap(_texts))
def test_a_body_taken_lean_is_the_message_the_route_takes(body: bytes) -> None:
    lean = _message(body)
    if lean is None:
        return
    routed = MessageIn.model_validate(json.loads(body))
    assert lean.model_dump() == routed.model_dump()
    assert lean.model_fields_set == routed.model_fields_set
