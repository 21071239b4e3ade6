"""The tracking transform: each recipient's copy with its own tracked links, pixel and
List-Unsubscribe.

``TrackingTransform`` is an ``engine.delivery.transform.MessageTransform``
(per recipient: the URLs carry the recipient's tokens). For a message whose
tenant or campaign has a tracking policy (``engine.model.TrackingPolicy``),
its body gets, on the policy's tracking domain and as the policy's switches
say: click URLs in place of its http(s) links, the open pixel in its HTML,
and the unsubscribe URL in List-Unsubscribe, List-Unsubscribe-Post and the
tenant's ``{{unsubscribe_url}}`` placeholders (``tracking_edge.rewriting.plan``).
A message without a policy, or whose policy turns everything off, goes
out as submitted. The envelope sender is not this transform's business.

The plan of a submission is made on its first recipient and kept in a small
LRU by submission id (checked against the body, so a reused id never mixes
bodies); the other recipients only splice their URLs in. The plans of its
text parts are kept by their octets (``plan.PartPlans``), so the submissions
of one campaign, one recipient each, scan their shared template once.

The tokens come from ``TrackingUrls`` (``tracking_edge.tokens.TrackingTokens``
is one). Pure apart from the cache: the same inputs give the same copy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

from engine.model import QueuedMessage, TrackingPolicy
from tracking_edge.rewriting.plan import Links, PartPlans, Plan, plan

PLAN_CACHE_SIZE: Final = 64


class TrackingUrls(Protocol):
    """The tracking URLs of one message on a tracking domain."""

    def open_url(self, message: QueuedMessage, domain: str) -> str: ...

    def click_url(self, message: QueuedMessage, domain: str, url: str) -> str: ...

    def click_urls(self, message: QueuedMessage, domain: str) -> Callable[[str], str]:
        """``click_url`` of ``message`` on ``domain``, for any URL."""
        ...

    def unsubscribe_url(self, message: QueuedMessage, domain: str) -> str: ...


class PlanCache:
    """The plans of the last ``size`` submissions rewritten, by submission id."""

    def __init__(self, size: int = PLAN_CACHE_SIZE) -> None:
        self._size = size
        self._plans: OrderedDict[str, Plan] = OrderedDict()
        self._parts = PartPlans()
        self.made = 0
        """How many plans were made (a miss makes one)."""

    def get(self, submission_id: str, body: bytes) -> Plan:
        """The plan of ``body``, the body of ``submission_id``."""
        found = self._plans.get(submission_id)
        if found is not None and (found.body is body or found.body == body):
            self._plans.move_to_end(submission_id)
            return found
        made = self._plans[submission_id] = plan(body, self._parts)
        self.made += 1
        self._plans.move_to_end(submission_id)
        if len(self._plans) > self._size:
            self._plans.popitem(last=False)
        return made


class TrackingTransform:
    """``MessageTransform`` that rewrites each recipient's copy for tracking."""

    def __init__(
        self,
        tokens: TrackingUrls,
        policy_for: Callable[[QueuedMessage], TrackingPolicy | None],
        *,
        plans: PlanCache | None = None,
    ) -> None:
        self._tokens = tokens
        self._policy_for = policy_for
        self._plans = plans if plans is not None else PlanCache()

    def per_recipient(self, message: QueuedMessage) -> bool:
        """Whether ``message`` is tracked: then each recipient's copy is its own."""
        return _tracked(self._policy_for(message))

    def body(self, message: QueuedMessage, body: bytes) -> bytes:
        policy = self._policy_for(message)
        if policy is None or not _tracked(policy):
            return body
        return self._plans.get(message.submission_id, body).render(self.links(message, policy))

    def sender(self, message: QueuedMessage, sending_domain: str | None) -> str:
        return message.sender

    def links(self, message: QueuedMessage, policy: TrackingPolicy) -> Links:
        """The URLs of ``message`` on the policy's tracking domain, as its switches say."""
        tokens, domain = self._tokens, policy.domain
        return Links(
            click=tokens.click_urls(message, domain) if policy.clicks else None,
            unsubscribe=tokens.unsubscribe_url(message, domain) if policy.unsubscribe else None,
            open=tokens.open_url(message, domain) if policy.opens else None,
        )


def _tracked(policy: TrackingPolicy | None) -> bool:
    return policy is not None and (policy.opens or policy.clicks or policy.unsubscribe)
