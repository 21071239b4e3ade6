"""The configuration schema: every setting, its default, bounds and meaning.

One frozen dataclass per TOML table. Each field carries ``doc`` and optional
``min``/``max``/``choices`` in its metadata, and ``path`` when it names a
file or directory; ``config.loader`` validates a file against this schema and
``config/penguin.toml`` is checked against it by a test. Nothing here reads
files or the environment.

Paths: a relative path (``path`` fields, a ``sqlite:PATH`` database URL) is
relative to the directory of the config file it was loaded from, whether
the file sets it or leaves the default; with no config file (the shipped
defaults), to the working directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

MIB = 1024 * 1024
MESSAGE_BYTES_CEILING = 1024 * MIB
"""The most ``submission.max_message_bytes`` may be."""
BUILTIN_WARMUP_PLANS = ("standard",)
"""Names of the warmup plans shipped in ``engine.scheduler.warmup.BUILTIN_PLANS``."""


def setting(
    default: Any,
    doc: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    path: bool = False,
) -> Any:
    """A schema field: its default, its documentation, its bounds; ``path`` when it
    names a file or directory (relative to the config file's directory)."""
    meta = {"doc": doc, "min": min, "max": max, "choices": choices, "path": path}
    if isinstance(default, list | dict):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, doc: str) -> Any:
    """A nested table."""
    return field(default_factory=cls, metadata={"doc": doc})


@dataclass(frozen=True)
class EngineSettings:
    data_dir: str = setting(
        "var",
        "Directory for the SQLite file, the record log, the engine secret and the "
        "self-signed certificate (relative paths: see the top of this file).",
        path=True,
    )
    node_id: str = setting("", "Name of this node in records; empty means the host name.")
    hostname: str = setting(
        "localhost", "Host name in SMTP banners and Received headers; a FQDN in production."
    )
    secret_file: str = setting(
        "",
        "File holding the engine secret that seals DKIM private keys (mode 0600); "
        "empty means <data_dir>/secret.key, generated at first start.",
        path=True,
    )
    shutdown_grace_seconds: float = setting(
        10.0, "On SIGTERM, how long in-flight sessions may finish before being cut.", min=0, max=600
    )
    processes: int = setting(
        0,
        "Engine processes `penguin run` starts; they share the listeners and the store, "
        "and each runs this role's services. 0 means one per CPU, less the delivery "
        "processes (at least 1), for processes that only accept; for delivering ones, one "
        "per CPU with redis.url set, else 1. submission.max_sessions applies in each process.",
        min=0,
        max=256,
    )
    delivery_processes: int = setting(
        1,
        "With role all: workers that only deliver, while the `processes` workers then only "
        "accept (the split layout, the fastest here: with two cores 1 + 1). 0 means every "
        "worker does both. More than one delivering process keeps shared limits "
        "(connections, rates, warmup counts, backoff) only with redis.url set.",
        min=0,
        max=256,
    )
    restart_delay_seconds: float = setting(
        1.0,
        "With several engine processes, a worker that dies is restarted after this long, "
        "doubling with each further crash within crash_window_seconds.",
        min=0.01,
        max=600,
    )
    restart_delay_max_seconds: float = setting(
        30.0, "Cap on the delay before a worker is restarted.", min=0.01, max=3600
    )
    crash_limit: int = setting(
        5,
        "Worker crashes within crash_window_seconds that stop the whole service "
        "(exit 1, the other workers stopped); 1 stops it at the first crash.",
        min=1,
        max=1000,
    )
    crash_window_seconds: float = setting(
        60.0, "How long a worker crash counts towards crash_limit.", min=1, max=86400
    )


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = setting(
        "",
        "Store location: sqlite:PATH or postgresql://...; empty means "
        "sqlite:<data_dir>/penguin.db.",
    )
    pool_size: int = setting(10, "PostgreSQL connection pool size.", min=1, max=200)
    commit_batch_max: int = setting(
        256, "Most submissions committed together in one group commit.", min=1, max=10000
    )


@dataclass(frozen=True)
class RedisSettings:
    url: str = setting(
        "",
        "Redis keeping the limits (rates, connection slots, warmup counters, backoff state) "
        "shared by every engine process and node: redis://HOST:PORT/DB, rediss://... or "
        "unix://PATH; empty keeps them in each process.",
    )
    key_prefix: str = setting("penguin:", "Prefix of every key the engine writes in Redis.")
    timeout_seconds: float = setting(
        0.5,
        "Longest wait for one Redis operation; past it the limits are kept in the process.",
        min=0.01,
        max=30,
    )
    retry_seconds: float = setting(
        5.0,
        "After Redis failed, how long the limits stay in the process before Redis is tried again.",
        min=0.1,
        max=3600,
    )


@dataclass(frozen=True)
class DnsSettings:
    nameservers: list[str] = setting(
        [],
        "Resolvers as host:port (port defaults to 53); empty means /etc/resolv.conf.",
    )
    timeout_seconds: float = setting(5.0, "Time allowed for one DNS query.", min=0.1, max=60)


@dataclass(frozen=True)
class SubmissionSettings:
    listen: list[str] = setting(
        ["127.0.0.1:2587"], "Addresses (host:port) of the SMTP submission listener."
    )
    tls_cert: str = setting(
        "",
        "PEM certificate chain for STARTTLS; empty means a self-signed one in data_dir.",
        path=True,
    )
    tls_key: str = setting("", "PEM private key for tls_cert.", path=True)
    allow_plaintext_auth_on_loopback: bool = setting(
        False, "Allow AUTH without TLS for clients connecting from 127.0.0.0/8 or ::1."
    )
    max_message_bytes: int = setting(
        25 * MIB,
        "Largest message accepted (SIZE and actual bytes).",
        min=1024,
        max=MESSAGE_BYTES_CEILING,
    )
    max_recipients: int = setting(1000, "Most recipients in one transaction.", min=1, max=100000)
    max_commands: int = setting(
        10000, "Most commands in one session before it is closed.", min=10, max=10**7
    )
    max_sessions: int = setting(
        1000, "Concurrent sessions; beyond it new clients get 421.", min=1, max=100000
    )
    idle_timeout_seconds: float = setting(
        300.0,
        "Time allowed for each command line, from when the server waits for it to its end.",
        min=1,
        max=3600,
    )
    data_timeout_seconds: float = setting(
        600.0, "Time allowed to receive the whole DATA body.", min=1, max=3600
    )
    auth_failure_delay_after: int = setting(
        3, "Failed AUTHs from one client IP before replies are slowed.", min=1, max=1000
    )
    auth_failure_refuse_after: int = setting(
        10,
        "Failed AUTHs from one client IP before it is refused; also the failed AUTHs "
        "naming one username, from any clients, before guesses at it are paced.",
        min=1,
        max=10000,
    )
    auth_failure_max_delay_seconds: float = setting(
        10.0,
        "Longest wait before answering a failed AUTH, and the time each failed guess "
        "at a paced username holds its turn.",
        min=1,
        max=60,
    )
    auth_failure_window_seconds: float = setting(
        900.0, "How long a failed AUTH counts against its client IP.", min=1, max=86400
    )


@dataclass(frozen=True)
class DeliverySettings:
    port: int = setting(25, "TCP port of remote MX hosts (tests use another).", min=1, max=65535)
    lease_seconds: float = setting(
        60.0,
        "How long a claimed message stays with its process without a renewal. A running "
        "attempt renews the lease every third of this, however long it takes, so only the "
        "messages of a process that died return to the queue, this long after it died.",
        min=1,
        max=86400,
    )
    broken_tls_memory_seconds: float = setting(
        3600.0,
        "After a failed TLS handshake with a host, send to it in clear this long.",
        min=0,
        max=86400,
    )
    connect_timeout_seconds: float = setting(
        30.0, "Time allowed to open a TCP connection.", min=0.1, max=600
    )
    greeting_timeout_seconds: float = setting(
        300.0, "Time allowed for the server's greeting.", min=0.1, max=600
    )
    ehlo_timeout_seconds: float = setting(
        300.0, "Time allowed for EHLO/HELO, STARTTLS and the TLS handshake.", min=0.1, max=600
    )
    command_timeout_seconds: float = setting(
        300.0, "Time allowed for the reply to MAIL, RCPT, DATA or RSET.", min=0.1, max=600
    )
    data_timeout_seconds: float = setting(
        600.0,
        "Time allowed to send the data and get the reply to its final dot.",
        min=0.1,
        max=3600,
    )
    max_waiters: int = setting(
        1000,
        "Deliveries waiting for a connection of one lane; beyond it they are delayed"
        " (put back without counting an attempt).",
        min=1,
        max=1000000,
    )
    wait_timeout_seconds: float = setting(
        60.0,
        "How long a delivery waits for a connection (a slot of the lane's connection"
        " limits, shared by every process) before it is delayed.",
        min=0.1,
        max=3600,
    )
    delayed_retry_seconds: float = setting(
        5.0,
        "How long a delivery delayed by the connection limits stays queued before the"
        " next try (no attempt is counted).",
        min=0.1,
        max=3600,
    )
    max_addresses_per_attempt: int = setting(
        5, "MX addresses tried in one attempt (Postfix smtp_mx_address_limit).", min=1, max=100
    )
    max_in_flight: int = setting(
        256, "Messages one engine process delivers at once.", min=1, max=100000
    )
    claim_batch: int = setting(
        128, "Most messages claimed from the store in one query.", min=1, max=10000
    )
    signing_threads: int = setting(
        2,
        "Threads per engine process that DKIM-sign; the RSA and Ed25519 operations run "
        "outside Python's lock, so signing uses other cores while the process goes on. "
        "0 signs on the event loop.",
        min=0,
        max=64,
    )
    idle_poll_seconds: float = setting(
        0.25, "When nothing is due, how often the store is asked again.", min=0.01, max=60
    )
    bounce_rules_file: str = setting(
        "",
        "TOML file of operator bounce classification rules, tried before the built-in ones.",
        path=True,
    )


@dataclass(frozen=True)
class RetrySettings:
    first_retry_seconds: float = setting(
        1200.0, "Delay before the first retry of a temporary failure.", min=1, max=86400
    )
    max_retry_seconds: float = setting(
        28800.0, "Cap on the retry delay, which doubles after each attempt.", min=1, max=604800
    )
    jitter: float = setting(
        0.2, "Random spread added to each retry delay (fraction).", min=0, max=1
    )
    max_age_seconds: float = setting(
        604800.0, "Age after which an undelivered message expires.", min=60, max=60 * 86400
    )


@dataclass(frozen=True)
class SchedulerSettings:
    ready_per_connection: int = setting(
        4,
        "Messages a lane (source x site) may have in flight in one process per connection "
        "its shaping allows: its ready queue; more wait in their scheduled queue.",
        min=1,
        max=1000,
    )
    delay_record_after_seconds: float = setting(
        60.0,
        "A wait on our own limits (suspension, warmup cap, throttle) longer than this moves "
        "the queue's due messages to its end, each with a Delayed record; shorter waits "
        "leave them queued.",
        min=0,
        max=86400,
    )
    refresh_seconds: float = setting(
        2.0,
        "How often each delivering process reloads suspensions, returns expired leases to "
        "their queues and stores its warmup counts; and how often every delivering or "
        "accepting process reloads the tenants' settings set with `penguin tenant set` "
        "(pool, priority, quotas).",
        min=0.001,
        max=300,
    )
    changes_poll_seconds: float = setting(
        0.05,
        "How often each delivering process asks the store which queues got new messages.",
        min=0.001,
        max=60,
    )
    max_queues_per_pick: int = setting(
        256,
        "Most scheduled queues looked at for one batch (bounds the work of one pick).",
        min=1,
        max=100000,
    )
    shaping_files: list[str] = setting(
        [],
        "TOML files of traffic shaping (lane limits by default, provider, site and source), "
        "read after the shipped engine/scheduler/shaping.toml; a later file's value for the "
        "same table and key wins.",
        path=True,
    )
    backoff_files: list[str] = setting(
        [],
        "TOML files of operator backoff rules (reactions to replies that mean slow down), "
        "tried before the shipped rules; a later file's rules before an earlier file's.",
        path=True,
    )
    backoff_step_after: int = setting(
        50,
        "Successful deliveries to a reduced target that bring it back one step towards "
        "its full rate and connections.",
        min=1,
        max=100000,
    )
    backoff_max_level: int = setting(
        6,
        "Most steps a target is reduced by (each step multiplies its rate and connections "
        "by the rule's factor).",
        min=1,
        max=30,
    )
    warmup_deferral_pause_rate: float = setting(
        0.2,
        "Warmup: a sending day whose deferral rate (deferred / sent) is above this does "
        "not advance the ramp.",
        min=0,
        max=1,
    )
    warmup_complaint_pause_rate: float = setting(
        0.003,
        "Warmup: a sending day whose complaint rate (complaints / sent) is above this does "
        "not advance the ramp.",
        min=0,
        max=1,
    )
    warmup_min_day_sample: int = setting(
        20,
        "Warmup: the rates of a day that sent fewer messages (per source and provider) are "
        "not judged; such a day advances the ramp.",
        min=1,
        max=1_000_000,
    )
    warmup_idle_restart_days: int = setting(
        30,
        "Warmup: this many days in a row without sending (per source and provider) start "
        "the ramp again at day 1.",
        min=1,
        max=3650,
    )


@dataclass(frozen=True)
class SourceSettings:
    address: str = setting("0.0.0.0", "Local IP address to bind for outgoing connections.")
    ehlo_hostname: str = setting("localhost", "EHLO name; must match the address's PTR.")
    warmup: str = setting(
        "",
        "Warmup plan capping what this source sends per provider and day: empty for none, "
        '"standard" (29 sending days from 200 to 10,000,000) or a [warmup_plans] name.',
    )
    weight: int = setting(
        1, "Share of this source in its pools (weighted round-robin).", min=1, max=1000
    )


@dataclass(frozen=True)
class WarmupPlanSettings:
    daily: list[int] = setting(
        [],
        "Cap on messages per provider for sending day 1, 2, ... (positive numbers, at "
        "least one); the source is warm after the last day.",
    )


@dataclass(frozen=True)
class PoolSettings:
    sources: list[str] = setting(["default"], "Names of the sources in this egress pool.")


PRIORITY_CLASSES = {"bulk": 0, "normal": 5, "transactional": 9}
"""Named message priorities; a digit 0..9 is a priority too (9 goes first)."""


def priority_value(text: str) -> int | None:
    """The priority ``text`` names (a class of ``PRIORITY_CLASSES`` in any case, or a
    digit 0..9, white space around ignored); None when it names none."""
    name = text.strip().lower()
    if name in PRIORITY_CLASSES:
        return PRIORITY_CLASSES[name]
    return int(name) if len(name) == 1 and name in "0123456789" else None


@dataclass(frozen=True)
class TenantSettings:
    """A tenant's routing: ``[tenants.NAME]``, NAME as in `penguin tenant create`."""

    pool: str = setting("default", "Egress pool (a [pools] name) the tenant's mail goes out from.")
    priority: str = setting(
        "normal",
        "Priority of the tenant's mail without an X-Priority-Class header: bulk (0), "
        "normal (5), transactional (9) or a digit 0..9; higher goes first in its queue.",
    )
    daily_quota: int = setting(
        0,
        "Messages (one per recipient) the tenant may submit per UTC day; beyond, submission "
        "is refused for the day (SMTP 452, HTTP 429). 0: no quota. `penguin tenant set` "
        "overrides it.",
        min=0,
        max=1_000_000_000,
    )
    rate_quota: str = setting(
        "",
        "Rate at which the tenant may submit messages (one per recipient): a throttle spec "
        "N/period[,max_burst=B] (e.g. 100/min); beyond, refused for now. Empty: no rate "
        "quota. `penguin tenant set` overrides it.",
    )
    track_opens: bool = setting(
        True,
        "Insert an open pixel in the tenant's HTML mail (when it has a default tracking "
        "domain, `penguin tracking-domain default`).",
    )
    track_clicks: bool = setting(
        True, "Rewrite the links of the tenant's mail to go through its tracking domain."
    )
    track_unsubscribe: bool = setting(
        True,
        "Add List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 one-click) headers "
        "pointing at the tenant's tracking domain.",
    )
    soft_suppress_after: int | None = setting(
        None,
        "Soft bounces of one address within soft_window after which the tenant's list "
        "suppresses it; unset inherits [bounce] soft_suppress_after.",
        min=1,
        max=1000,
    )
    soft_window: str | None = setting(
        None,
        "Window the tenant's soft bounces are counted in (a duration: 7d, 36h); unset "
        "inherits [bounce] soft_window.",
    )


@dataclass(frozen=True)
class CampaignSettings:
    """A campaign's routing: ``[campaigns."TENANT:CAMPAIGN"]`` (the X-Campaign value)."""

    pool: str = setting("", "Egress pool of the campaign's mail; empty inherits the tenant's.")
    priority: str = setting(
        "",
        "Priority of the campaign's mail without an X-Priority-Class header (as in "
        "[tenants.NAME]); empty inherits the tenant's.",
    )
    tracking_domain: str = setting(
        "",
        "Tracking domain of the campaign's mail, one registered for the tenant (`penguin "
        "tracking-domain add`); empty inherits the tenant's default. A name not registered "
        "for the tenant turns tracking off for the campaign (and is logged).",
    )
    track_opens: bool | None = setting(
        None, "Open pixel on (true) or off (false); unset inherits the tenant's."
    )
    track_clicks: bool | None = setting(
        None, "Link rewriting on (true) or off (false); unset inherits the tenant's."
    )
    track_unsubscribe: bool | None = setting(
        None, "Unsubscribe headers on (true) or off (false); unset inherits the tenant's."
    )


KEY_ID = re.compile(r"[a-z0-9]{1,8}")
"""A return-path token key id (``[bounce] token_key_id``): 1 to 8 of a-z, 0-9."""


@dataclass(frozen=True)
class BounceSettings:
    """Bounces and complaints coming back: ``[bounce]``."""

    listen: list[str] = setting(
        ["127.0.0.1:2525"],
        "Addresses (host:port) of the inbound SMTP listener for bounces and feedback-loop "
        "reports (the MX of every bounces.<domain>); empty runs none.",
    )
    feedback_addresses: list[str] = setting(
        [],
        "Addresses registered with providers' feedback loops (e.g. fbl@bounces.example.com); "
        "the listener accepts them besides the return-path addresses of the tenants' domains.",
    )
    max_message_bytes: int = setting(
        10 * MIB,
        "Largest inbound message accepted (SIZE and actual bytes).",
        min=1024,
        max=100 * MIB,
    )
    max_sessions: int = setting(
        100, "Concurrent inbound sessions; beyond it new clients get 421.", min=1, max=100000
    )
    client_connection_rate: str = setting(
        "60/min", "Connections one client IP may open (throttle spec N/period); beyond, 421."
    )
    client_message_rate: str = setting(
        "600/h", "Messages one client IP may send (throttle spec N/period); beyond, 450."
    )
    soft_suppress_after: int = setting(
        3,
        "Soft bounces (delays, full mailboxes, unreachable hosts) of one address within "
        "soft_window after which it is suppressed.",
        min=1,
        max=1000,
    )
    soft_window: str = setting("7d", "Window soft bounces are counted in (a duration: 7d, 36h).")
    poll_seconds: float = setting(
        5.0,
        "Interval at which stored inbound messages are looked for, besides each acceptance.",
        min=0.1,
        max=3600,
    )
    return_path_prefix: str = setting(
        "bounces",
        "Envelope senders go out as b-<token>@<prefix>.<From domain>, a token naming the "
        "message; publish the MX and SPF `penguin domain records` prints for that domain.",
    )
    token_key_id: str = setting(
        "a",
        "Key id (1 to 8 of a-z, 0-9) whose key signs new return-path tokens and "
        "X-Penguin-Ref headers; keys are derived from the engine secret. To rotate, set a "
        "new id and move the old one to accepted_key_ids.",
    )
    accepted_key_ids: list[str] = setting(
        [],
        "Older key ids whose tokens are still trusted in bounces and complaints; a key id "
        "in neither place is not trusted.",
    )


@dataclass(frozen=True)
class AdminSettings:
    """The admin API and ``/metrics`` listener: ``[admin]``."""

    listen: str = setting("127.0.0.1:8025", "host:port of the admin API and /metrics.")
    operator_token_file: str = setting(
        "",
        "File holding the operator token (its whole content, stripped; not readable by "
        "others, e.g. mode 0600). Sent as `Authorization: Bearer TOKEN` it gives the "
        "operator endpoints, and the tenant endpoints for the tenant named by the header "
        "`Penguin-Tenant`. Empty: no operator access over HTTP.",
        path=True,
    )
    key_rate: str = setting(
        "50/s,max_burst=100",
        "Requests one tenant API key may make (throttle spec N/period[,max_burst=B], "
        "shared by every process with redis.url set); beyond, 429 with Retry-After.",
    )
    max_connections: int = setting(
        1000,
        "Connections the admin listener holds at once; one more is answered 503 and "
        "closed at once.",
        min=1,
        max=100000,
    )


@dataclass(frozen=True)
class TrackingSettings:
    """The tracking edge, its links and the tenants' tracking domains: ``[tracking]``."""

    listen: str = setting(
        "127.0.0.1:8080",
        "host:port the tracking edge (open pixel, click redirects, one-click unsubscribe) "
        "listens on; empty runs no edge in the default layout (`penguin run --role "
        "tracking` still runs one).",
    )
    token_key_id: str = setting(
        "a",
        "Key id (1 to 8 of a-z, 0-9) whose key signs new tracking links; keys are derived "
        "from the engine secret. To rotate, set a new id and move the old one to "
        "accepted_key_ids.",
    )
    accepted_key_ids: list[str] = setting(
        [], "Older key ids whose tracking links are still served; any other is refused."
    )
    max_connections: int = setting(
        10000,
        "Connections the tracking edge holds at once (every mail client opening a message "
        "reaches it); one more is answered 503 and closed at once.",
        min=1,
        max=1000000,
    )
    scheme: str = setting(
        "https",
        "Scheme of tracking links: https, or http for a test setup without certificates.",
        choices=("https", "http"),
    )
    certificate_dir: str = setting(
        "",
        "Directory of TLS certificates, one per tracking domain: <domain>.crt with "
        "<domain>.key, or <domain>.pem holding both; default.crt/.key (or default.pem) for "
        "clients without SNI (else the first). Changed files are picked up without restart. "
        "Empty serves plain HTTP (behind the operator's TLS proxy).",
        path=True,
    )
    certificate_check_seconds: float = setting(
        30.0, "How often the certificate directory is checked for changed files.", min=1, max=3600
    )
    trusted_proxies: list[str] = setting(
        [],
        "Addresses or networks of proxies whose X-Forwarded-For names the client (plain "
        "HTTP only); empty trusts none.",
    )
    flush_interval_seconds: float = setting(
        0.5,
        "How often buffered open, click and unsubscribe records are written to the store.",
        min=0.01,
        max=60,
    )
    flush_batch_max: int = setting(
        2000, "Most records written to the store in one batch.", min=1, max=100_000
    )
    scanner_click_seconds: float = setting(
        10.0,
        "A click this soon after the send is taken for a link scanner's (machine: true).",
        min=0,
        max=3600,
    )
    cname_target: str = setting(
        "",
        "Host name a tracking domain's CNAME points at (the tracking edge, or the proxy in "
        "front of it), as `penguin tracking-domain add` prints it; empty means "
        "engine.hostname.",
    )
    refresh_seconds: float = setting(
        10.0,
        "How often each delivering and edge process reloads the tracking domains from the "
        "store (and at once on `penguin reload`).",
        min=0.1,
        max=3600,
    )


@dataclass(frozen=True)
class WebhookSettings:
    """Posting records to the tenants' webhooks: ``[webhooks]``."""

    enabled: bool = setting(
        True,
        "Run the webhook dispatcher and sender in the delivering processes; false queues and "
        "sends nothing (the record log keeps its place until it runs again).",
    )
    allow_http: bool = setting(
        False,
        "Accept webhook URLs with http:// (no TLS); otherwise https:// only. For tests and "
        "endpoints on a trusted network.",
    )
    allow_private: bool = setting(
        False,
        "Let webhooks post to addresses that are not public: loopback, private (RFC 1918, "
        "unique local), link-local (cloud metadata), shared, reserved. Checked on every "
        "address a URL's host resolves to, when the webhook is saved and before each POST.",
    )
    request_timeout_seconds: float = setting(
        10.0,
        "Time allowed for one POST, from resolving the host to the endpoint's status line.",
        min=0.1,
        max=300,
    )
    concurrency_per_endpoint: int = setting(
        4, "POSTs in flight to one webhook at once, per engine process.", min=1, max=1000
    )
    max_in_flight: int = setting(
        64, "POSTs in flight to all webhooks at once, per engine process.", min=1, max=100000
    )
    first_retry_seconds: float = setting(
        30.0, "Delay before the first retry of a failed POST.", min=0.1, max=86400
    )
    max_retry_seconds: float = setting(
        3600.0, "Cap on the retry delay, which doubles after each attempt.", min=0.1, max=86400
    )
    retry_jitter: float = setting(
        0.2, "Random spread added to each retry delay (fraction).", min=0, max=1
    )
    retry_for_seconds: float = setting(
        86400.0,
        "How long a POST is retried, from when it was queued; the last attempt comes at this "
        "age, after which it is marked failed.",
        min=1,
        max=30 * 86400,
    )
    poll_seconds: float = setting(
        1.0,
        "How often new records are looked for and due POSTs claimed.",
        min=0.001,
        max=60,
    )
    keep_log_seconds: float = setting(
        7 * 86400.0,
        "How long delivered and failed POSTs stay in a webhook's delivery log.",
        min=60,
        max=365 * 86400,
    )


@dataclass(frozen=True)
class RecordsSettings:
    json_log: str = setting(
        "",
        "JSON-lines file every log record is appended to; empty means <data_dir>/records.jsonl.",
        path=True,
    )
    json_log_enabled: bool = setting(True, "Write the JSON-lines file; false writes none.")


@dataclass(frozen=True)
class LoggingSettings:
    level: str = setting(
        "INFO", "Operator log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )


def _default_sources() -> dict[str, SourceSettings]:
    return {"default": SourceSettings()}


def _default_pools() -> dict[str, PoolSettings]:
    return {"default": PoolSettings()}


@dataclass(frozen=True)
class Settings:
    """The whole configuration; built once at start and passed to constructors."""

    engine: EngineSettings = section(EngineSettings, "Process-wide settings.")
    database: DatabaseSettings = section(DatabaseSettings, "The store.")
    redis: RedisSettings = section(RedisSettings, "Shared limits.")
    dns: DnsSettings = section(DnsSettings, "DNS resolution for delivery.")
    submission: SubmissionSettings = section(SubmissionSettings, "SMTP submission listener.")
    delivery: DeliverySettings = section(DeliverySettings, "Outgoing SMTP.")
    bounce: BounceSettings = section(BounceSettings, "Inbound bounces and feedback-loop reports.")
    retry: RetrySettings = section(RetrySettings, "Retries of temporary failures.")
    scheduler: SchedulerSettings = section(
        SchedulerSettings, "Scheduling: shaping, backoff, warmup."
    )
    sources: dict[str, SourceSettings] = field(
        default_factory=_default_sources,
        metadata={"doc": "Egress sources by name.", "item": SourceSettings},
    )
    pools: dict[str, PoolSettings] = field(
        default_factory=_default_pools,
        metadata={"doc": "Egress pools by name.", "item": PoolSettings},
    )
    tenants: dict[str, TenantSettings] = field(
        default_factory=dict,
        metadata={
            "doc": "Tenants' pools, default priorities and tracking.",
            "item": TenantSettings,
        },
    )
    campaigns: dict[str, CampaignSettings] = field(
        default_factory=dict,
        metadata={
            "doc": 'Campaigns\' pools, default priorities and tracking, keyed "TENANT:CAMPAIGN".',
            "item": CampaignSettings,
        },
    )
    warmup_plans: dict[str, WarmupPlanSettings] = field(
        default_factory=dict,
        metadata={
            "doc": "Warmup plans by name for the sources' warmup, besides the shipped one.",
            "item": WarmupPlanSettings,
        },
    )
    admin: AdminSettings = section(AdminSettings, "Admin API and /metrics listener.")
    tracking: TrackingSettings = section(
        TrackingSettings, "The tracking edge, its links and the tenants' tracking domains."
    )
    records: RecordsSettings = section(RecordsSettings, "Log records output.")
    webhooks: WebhookSettings = section(WebhookSettings, "Records posted to tenants' webhooks.")
    logging: LoggingSettings = section(LoggingSettings, "Operator logs.")

    def database_url(self) -> str:
        """``database.url``, or the SQLite file in ``engine.data_dir`` when it is empty."""
        return self.database.url or f"sqlite:{PurePath(self.engine.data_dir, 'penguin.db')}"

    def record_log_path(self) -> str:
        """``records.json_log``, or ``<data_dir>/records.jsonl`` when it is empty; empty
        when the file is turned off."""
        if not self.records.json_log_enabled:
            return ""
        return self.records.json_log or str(PurePath(self.engine.data_dir, "records.jsonl"))
