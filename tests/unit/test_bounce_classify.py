import re
from pathlib import Path

import pytest

from benchmarks.classify import DATA as DIAGNOSTICS
from benchmarks.classify import load as load_diagnostics
from benchmarks.classify import parse_reply
from engine.delivery.bounce_category import (
    STATUS_CATEGORIES,
    SUBJECT_CATEGORIES,
    TRANSIENT_CATEGORIES,
    is_definitive,
    status_category,
)
from engine.delivery.bounce_classify import (
    BUILTIN_TABLE,
    BounceClassifier,
    Category,
    Rule,
    RuleFileError,
    load_rules,
    parse_rules,
    stage_from_text,
)
from engine.smtp.reply import EnhancedCode, Reply, Stage

CLASSIFIER = BounceClassifier([])

# (code, enhanced code, text, expected category): replies as the providers send them.
REPLIES = [
    # Gmail
    (
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist. Please try double-checking "
        "the recipient's email address for typos or unnecessary spaces. Learn more at "
        "https://support.google.com/mail/?p=NoSuchUser",
        "InvalidRecipient",
    ),
    (
        452,
        "4.2.2",
        "The email account that you tried to reach is over quota. Please direct the recipient "
        "to https://support.google.com/mail/?p=OverQuotaTemp",
        "QuotaIssues",
    ),
    (
        552,
        "5.2.2",
        "The recipient's inbox is out of storage space and inactive. Please direct the "
        "recipient to https://support.google.com/mail/?p=OverQuotaPerm",
        "InactiveMailbox",
    ),
    (550, "5.2.1", "The email account that you tried to reach is disabled.", "InactiveMailbox"),
    (
        450,
        "4.2.1",
        "The user you are trying to contact is receiving mail too quickly. Please resend your "
        "message at a later time.",
        "RateLimited",
    ),
    (
        421,
        "4.7.28",
        "Our system has detected an unusual rate of unsolicited mail originating from your IP "
        "address. To protect our users from spam, mail sent from your IP address has been "
        "temporarily rate limited.",
        "RateLimited",
    ),
    (
        550,
        "5.7.1",
        "Our system has detected an unusual rate of unsolicited mail originating from your IP "
        "address. To protect our users from spam, mail sent from your IP address has been "
        "blocked.",
        "SpamBlock",
    ),
    (
        550,
        "5.7.1",
        "Our system has detected that this message is likely unsolicited mail. To reduce the "
        "amount of spam sent to Gmail, this message has been blocked.",
        "SpamContent",
    ),
    (
        550,
        "5.7.1",
        "Our system has detected that this message is likely suspicious due to the very low "
        "reputation of the sending domain. To best protect our users from spam, the message "
        "has been blocked.",
        "SpamBlock",
    ),
    (
        550,
        "5.7.26",
        "This mail has been blocked because the sender is unauthenticated. Gmail requires all "
        "senders to authenticate with either SPF or DKIM.",
        "AuthenticationFailed",
    ),
    (
        550,
        "5.7.26",
        "Unauthenticated email from example.com is not accepted due to domain's DMARC policy.",
        "AuthenticationFailed",
    ),
    (
        550,
        "5.7.25",
        "The IP address sending this message does not have a PTR record setup, or the "
        "corresponding forward DNS entry does not point to the sending IP.",
        "BadConfiguration",
    ),
    (
        421,
        "4.7.29",
        "Your email has been rate limited because this message wasn't sent over a TLS "
        "connection. Gmail requires all bulk email senders to use TLS/SSL.",
        "BadConfiguration",
    ),
    (
        552,
        "5.7.0",
        "This message was blocked because its content presents a potential security issue. "
        "Please visit https://support.google.com/mail/?p=BlockedMessage to review our message "
        "content and attachment content guidelines.",
        "VirusRelated",
    ),
    (552, "5.3.4", "Your message exceeded Google's message size limits.", "ContentRelated"),
    (421, "4.7.0", "Try again later, closing connection.", "PolicyRelated"),
    (451, "4.3.0", "Mail server temporarily rejected message.", "TransientFailure"),
    # Microsoft: Outlook.com, Exchange Online, Exchange Server
    (
        550,
        "5.5.0",
        "Requested action not taken: mailbox unavailable (S2017062302). [AM0PR07MB1234.eurprd07]",
        "InvalidRecipient",
    ),
    (
        550,
        "5.7.1",
        "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet "
        "service provider since part of their network is on our block list (S3150).",
        "SpamBlock",
    ),
    (
        550,
        "5.7.1",
        "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet "
        "service provider since part of their network is on our block list (S3140).",
        "SpamBlock",
    ),
    (
        451,
        "4.7.650",
        "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. "
        "For e-mail delivery information, see https://postmaster.live.com (S775)",
        "RateLimited",
    ),
    (
        451,
        "4.7.651",
        "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.",
        "RateLimited",
    ),
    (
        421,
        None,
        "RP-001 (BAY004-MC1F13) Unfortunately, some messages from 192.0.2.1 weren't sent. "
        "Please try again. We have limits for how many messages can be sent per hour and per day.",
        "RateLimited",
    ),
    (
        550,
        None,
        "DY-001 (SNT004-MC1F17) Unfortunately, messages from 192.0.2.1 weren't sent. Please "
        "contact your Internet service provider. You can tell them that Hotmail does not relay "
        "dynamically-assigned IP ranges.",
        "SpamBlock",
    ),
    (
        550,
        "5.7.515",
        "Access denied, sending domain example.com does not meet the required authentication "
        "level.",
        "AuthenticationFailed",
    ),
    (
        550,
        "5.7.509",
        "Access denied, sending domain example.com does not pass DMARC verification and has a "
        "DMARC policy of reject.",
        "AuthenticationFailed",
    ),
    (550, "5.7.606", "Access denied, banned sending IP [192.0.2.1].", "SpamBlock"),
    (
        550,
        "5.4.1",
        "Recipient address rejected: Access denied. AS(201806281) [DB5EUR03FT012.eop-EUR03]",
        "InvalidRecipient",
    ),
    (
        550,
        "5.1.10",
        "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "InvalidRecipient",
    ),
    (550, "5.7.1", "RESOLVER.RST.NotAuthorized; not authorized", "PolicyRelated"),
    (452, "4.3.1", "Insufficient system resources", "TransientFailure"),
    (554, "5.4.14", "Hop count exceeded - possible mail loop ATTR34", "RoutingErrors"),
    (
        554,
        "5.2.2",
        "mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuota",
        "QuotaIssues",
    ),
    (550, "5.7.1", "Unable to relay", "RelayDenied"),
    (550, "5.5.3", "RESOLVER.ADR.RecipLimit; too many recipients", "TooManyRecipients"),
    # Yahoo, AOL
    (
        421,
        "4.7.0",
        "[TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints - "
        "4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "RateLimited",
    ),
    (
        421,
        "4.7.0",
        "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user "
        "complaints - 4.16.56.1; see https://postmaster.yahooinc.com/error-codes",
        "RateLimited",
    ),
    (
        421,
        "4.7.0",
        "[TS03] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT "
        "succeed. See https://postmaster.yahooinc.com/error-codes",
        "SpamBlock",
    ),
    (
        553,
        "5.7.1",
        "[BL21] Connections will not be accepted from 192.0.2.1, because the ip is in "
        "Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
        "SpamBlock",
    ),
    (
        554,
        "5.7.9",
        "Message not accepted for policy reasons.  See https://senders.yahooinc.com/error-codes",
        "PolicyRelated",
    ),
    (
        553,
        "5.1.1",
        "<someone@yahoo.com>: user doesn't have a yahoo.com account",
        "InvalidRecipient",
    ),
    (552, None, "1 Requested mail action aborted, mailbox not found", "InvalidRecipient"),
    (
        554,
        None,
        "30 Sorry, your message to someone@aol.com cannot be delivered. This mailbox is "
        "disabled (554.30).",
        "InactiveMailbox",
    ),
    # Apple iCloud
    (550, "5.1.1", "<someone@icloud.com>: user does not exist", "InvalidRecipient"),
    (
        554,
        "5.7.1",
        "[CS01] Message rejected due to local policy. Please visit "
        "https://support.apple.com/en-us/HT204137",
        "PolicyRelated",
    ),
    (552, "5.2.2", "<someone@me.com>: user is over quota", "QuotaIssues"),
    (
        550,
        "5.7.0",
        "Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1",
        "SpamBlock",
    ),
    # Postfix
    (
        550,
        "5.1.1",
        "<someone@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
        "InvalidRecipient",
    ),
    (
        550,
        "5.1.1",
        "<someone@example.org>: Recipient address rejected: User unknown in local recipient table",
        "InvalidRecipient",
    ),
    (552, "5.2.2", "<someone@example.org>: Mailbox full", "QuotaIssues"),
    (554, "5.7.1", "<someone@example.org>: Relay access denied", "RelayDenied"),
    (
        450,
        "4.7.1",
        "<localhost>: Helo command rejected: Host not found",
        "BadConfiguration",
    ),
    (
        504,
        "5.5.2",
        "<localhost>: Helo command rejected: need fully-qualified hostname",
        "BadConfiguration",
    ),
    (421, "4.7.0", "mx.example.org Error: too many connections from 192.0.2.1", "RateLimited"),
    (
        450,
        "4.7.1",
        "Client host rejected: cannot find your hostname, [192.0.2.1]",
        "BadConfiguration",
    ),
    (
        554,
        "5.7.1",
        "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; "
        "https://www.spamhaus.org/query/ip/192.0.2.1",
        "SpamBlock",
    ),
    (
        450,
        "4.2.0",
        "<someone@example.org>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/example.org.html",
        "TransientFailure",
    ),
    (
        450,
        "4.1.8",
        "<bounces@example.com>: Sender address rejected: Domain not found",
        "InvalidSender",
    ),
    (
        450,
        "4.1.2",
        "<someone@nosuch.example>: Recipient address rejected: Domain not found",
        "BadDomain",
    ),
    (
        550,
        "5.7.23",
        "<someone@example.org>: Recipient address rejected: Message rejected due to: SPF fail - "
        "not authorized",
        "AuthenticationFailed",
    ),
    (452, "4.3.1", "Insufficient system storage", "TransientFailure"),
    (552, "5.3.4", "Message size exceeds fixed limit", "ContentRelated"),
    (452, "4.5.3", "Error: too many recipients", "TooManyRecipients"),
    (421, "4.4.2", "mx.example.org Error: timeout exceeded", "BadConnection"),
    (
        556,
        "5.1.10",
        "<someone@nullmx.example>: Recipient address rejected: Domain nullmx.example does not "
        "accept mail (nullMX)",
        "BadDomain",
    ),
    (500, "5.5.2", "Error: bad syntax", "ProtocolErrors"),
    (503, "5.5.1", "Error: need MAIL command", "ProtocolErrors"),
    # Exim, cPanel
    (550, None, "Unrouteable address", "RoutingErrors"),
    (550, "5.1.1", "<someone@example.net>... No Such User Here", "InvalidRecipient"),
    (451, None, "Temporary local problem - please try later", "TransientFailure"),
    (550, None, "Administrative prohibition", "PolicyRelated"),
    (550, None, "relay not permitted", "RelayDenied"),
    (
        550,
        None,
        "Verification failed for <bounces@example.com>\nUnrouteable address\nSender verify failed",
        "InvalidSender",
    ),
    (
        421,
        None,
        "Too many concurrent SMTP connections from this IP address; please try again later.",
        "RateLimited",
    ),
    (
        550,
        None,
        "This message contains a virus (Eicar-Test-Signature) and has been rejected",
        "VirusRelated",
    ),
    (
        552,
        None,
        "This message contains an unacceptable attachment (.exe)",
        "ProhibitedAttachment",
    ),
    (550, None, "Your message has been rejected as spam", "SpamContent"),
    # Texts of DSNs and of failures the sending MTA reports itself (Postfix, Exim wording).
    (
        451,
        None,
        "Host or domain name not found. Name service error for name=example.com type=MX: Host "
        "not found, try again",
        "DNSFailure",
    ),
    (
        550,
        "5.4.4",
        "Host or domain name not found. Name service error for name=nosuch.example type=A: "
        "Host not found",
        "BadDomain",
    ),
    (
        451,
        None,
        "connect to mx.example.org[192.0.2.25]:25: Connection timed out",
        "NoAnswerFromHost",
    ),
    (
        451,
        None,
        "lost connection with mx.example.org[192.0.2.25] while sending end of data -- message "
        "may be sent more than once",
        "BadConnection",
    ),
    (550, None, "retry timeout exceeded", "MessageExpired"),
    (550, None, "Message rejected due to local policy", "PolicyRelated"),
    (550, None, "Automatic reply: I am out of the office until 3 June", "AutoReply"),
    (
        550,
        None,
        "I am protecting myself from junk mail with a challenge-response system",
        "ChallengeResponse",
    ),
    (550, None, "You have been unsubscribed from the announce list", "Unsubscribe"),
    (550, None, "Please confirm your subscription to the announce list", "Subscribe"),
    # No text rule: enhanced and basic code fallbacks.
    (550, "5.1.1", "Sorry", "InvalidRecipient"),
    (550, "5.2.1", "Sorry", "InactiveMailbox"),
    (451, "4.4.1", "Sorry", "NoAnswerFromHost"),
    (451, "4.4.3", "Sorry", "DNSFailure"),
    (554, "5.4.7", "Sorry", "MessageExpired"),
    (554, "5.6.0", "Sorry", "ContentRelated"),
    (535, "5.7.8", "Sorry", "AuthenticationFailed"),
    (550, "5.7.27", "Sorry", "InvalidSender"),
    (550, "5.7.99", "Sorry", "PolicyRelated"),
    (550, "5.0.0", "Sorry", "Uncategorized"),
    (450, None, "Sorry", "TransientFailure"),
    (554, None, "Transaction failed", "Uncategorized"),
    (502, None, "Command not implemented", "ProtocolErrors"),
]


# (code, enhanced code, text, expected category): real-world replies, by category.
MORE_REPLIES = [
    # RateLimited
    (
        421,
        "4.7.28",
        (
            "Gmail has detected an unusual rate of mail originating from your SPF "
            "domain [example.com]. To protect our users from spam, mail sent from "
            "your domain has been temporarily rate limited."
        ),
        "RateLimited",
    ),
    (
        450,
        "4.2.1",
        (
            "Peak SMTP relay limit exceeded for customer. This is a temporary "
            "error. For more information on SMTP relay limits, please contact your "
            "administrator."
        ),
        "RateLimited",
    ),
    (
        550,
        "5.4.5",
        (
            "Daily user sending quota exceeded. For more information, go to "
            "https://support.google.com/a/answer/166852"
        ),
        "RateLimited",
    ),
    (
        451,
        "4.7.500",
        (
            "Server busy. Please try again later from [192.0.2.1]. (S77714) "
            "[AM4PEPF00025F98.EURPRD83.prod.outlook.com]"
        ),
        "RateLimited",
    ),
    (
        451,
        "4.7.652",
        ("The mail server [192.0.2.1] has exceeded the maximum number of connections."),
        "RateLimited",
    ),
    (
        421,
        "4.3.2",
        (
            "The maximum number of concurrent server connections has exceeded a "
            "limit, closing transmission channel"
        ),
        "RateLimited",
    ),
    (
        550,
        "5.1.90",
        (
            "Your message can't be sent because you've reached your daily limit for "
            "message recipients"
        ),
        "RateLimited",
    ),
    (
        554,
        "5.2.0",
        (
            "STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed "
            "to process message due to a permanent exception"
        ),
        "RateLimited",
    ),
    (
        421,
        "4.7.0",
        (
            "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
            "volume or user complaints - 4.16.56.1; see "
            "https://postmaster.yahooinc.com/error-codes"
        ),
        "RateLimited",
    ),
    (
        421,
        "4.7.0",
        (
            "[GL01] Message from 192.0.2.1 temporarily deferred - 4.16.50. Please "
            "refer to https://postmaster.yahooinc.com/error-codes"
        ),
        "RateLimited",
    ),
    (451, None, "Message temporarily deferred - [160]", "RateLimited"),
    (
        421,
        "4.7.0",
        ("[TS02] Messages from 192.0.2.1 temporarily deferred due to excessive user complaints"),
        "RateLimited",
    ),
    (
        452,
        "4.2.1",
        (
            "mx.comcast.net Too many messages from your IP, RL000001. "
            "https://postmaster.comcast.net/smtp-error-codes.php#RL000001"
        ),
        "RateLimited",
    ),
    (
        421,
        None,
        (
            "mwinf5c23 ME Trop de connexions, veuillez verifier votre "
            "configuration. Too many connections, slow down. OFR005_104 [104]"
        ),
        "RateLimited",
    ),
    (
        421,
        None,
        (
            "Sorry, too many messages from your IP. Try again later, you have sent "
            "too many (ratelimit)"
        ),
        "RateLimited",
    ),
    (
        451,
        "4.7.1",
        ("Please try again later, rate limit exceeded for sender domain example.com"),
        "RateLimited",
    ),
    (
        421,
        "4.7.0",
        ("mx.gmx.net too many connections from your IP, please slow down (mxgmx117)"),
        "RateLimited",
    ),
    (550, None, "Message rejected: sender rate overlimit - 21.0/1h/", "RateLimited"),
    (421, "4.4.5", "Connection rate limit exceeded.", "RateLimited"),
    (450, "4.7.1", "Error: too much mail from 192.0.2.1", "RateLimited"),
    (
        421,
        None,
        (
            "Too many concurrent connections from your host. Reduce the number of "
            "connections and try again."
        ),
        "RateLimited",
    ),
    (451, "4.7.28", "mail flood detected from 192.0.2.1", "RateLimited"),
    (
        421,
        "4.7.0",
        ("Our system has detected an unusual frequency of messages from your domain; slow down"),
        "RateLimited",
    ),
    (451, None, "Throttling failure: Maximum sending rate exceeded.", "RateLimited"),
    # SpamBlock: IP and domain block lists, reputation
    (
        554,
        "5.7.1",
        (
            "Service unavailable; Client host [192.0.2.1] blocked using Barracuda "
            "Reputation; "
            "http://www.barracudanetworks.com/reputation/?pr=1&ip=192.0.2.1"
        ),
        "SpamBlock",
    ),
    (
        550,
        "5.7.1",
        "Service unavailable; client [192.0.2.1] blocked using bl.spamcop.net",
        "SpamBlock",
    ),
    (550, None, "Rejected because 192.0.2.1 is in a black list at dnsbl.sorbs.net", "SpamBlock"),
    (
        554,
        None,
        ("mta1.example.net ESMTP not accepting messages: your IP 192.0.2.1 is listed in SORBS"),
        "SpamBlock",
    ),
    (550, "5.7.1", "Connections not accepted from IP addresses on Spamhaus XBL", "SpamBlock"),
    (
        553,
        "5.3.0",
        (
            "flpd574 DNSBL:RBL 521< 192.0.2.1 >_is_blocked.For assistance forward "
            "this email to abuse_rbl@abuse-att.net"
        ),
        "SpamBlock",
    ),
    (
        553,
        None,
        ("192.0.2.1 is listed on the Spamhaus Block List (SBL). Please contact your ISP."),
        "SpamBlock",
    ),
    (
        554,
        None,
        (
            "resimta-po-12v.sys.comcast.net comcast 192.0.2.1 Comcast block for "
            "spam. Please see "
            "http://postmaster.comcast.net/smtp-error-codes.php#BL000000"
        ),
        "SpamBlock",
    ),
    (
        554,
        None,
        (
            "resimta-ch2-18v.sys.comcast.net 192.0.2.1 found on one or more DNSBLs, "
            "see http://postmaster.comcast.net/smtp-error-codes.php#BL000001"
        ),
        "SpamBlock",
    ),
    (
        554,
        "5.7.1",
        (
            "Service unavailable; Client host [192.0.2.1] blocked by cloudmark CSI. "
            "See https://csi.cloudmark.com/reset-request/?ip=192.0.2.1"
        ),
        "SpamBlock",
    ),
    (550, "5.7.1", "Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1", "SpamBlock"),
    (
        554,
        None,
        (
            "Your access to this mail system has been rejected due to the sending "
            "MTA's poor reputation. If you believe that this failure is in error, "
            "please contact the intended recipient via alternate means."
        ),
        "SpamBlock",
    ),
    (
        550,
        None,
        (
            "Rejected by IP reputation - "
            "https://community.mimecast.com/docs/DOC-1369#550 [aBcDeFgHiJ.uk12]"
        ),
        "SpamBlock",
    ),
    (554, None, "IP 192.0.2.1 listed in UCEPROTECT-Level1", "SpamBlock"),
    (550, "5.7.1", "Your IP is on the RBL, contact your hosting provider", "SpamBlock"),
    (554, "5.7.1", "[192.0.2.1] banned by the invaluement ivmSIP list", "SpamBlock"),
    (
        550,
        "5.7.606",
        (
            "Access denied, banned sending IP [192.0.2.1]. To request removal from "
            "this list please visit https://sender.office.com/"
        ),
        "SpamBlock",
    ),
    (550, "5.7.708", "Access denied, traffic not accepted from this IP.", "SpamBlock"),
    (
        550,
        "5.7.511",
        (
            "Access denied, banned sender[192.0.2.1]. To request removal from this "
            "list please forward this message to delist@messaging.microsoft.com"
        ),
        "SpamBlock",
    ),
    (
        553,
        "5.7.1",
        (
            "[BL21] Connections will not be accepted from 192.0.2.1, because the ip "
            "is in Spamhaus's list"
        ),
        "SpamBlock",
    ),
    (
        421,
        "4.7.0",
        (
            "[TSS09] All messages from 192.0.2.1 will be permanently deferred; "
            "Retrying will NOT succeed."
        ),
        "SpamBlock",
    ),
    (550, "5.7.1", "Mail from IP 192.0.2.1 was rejected due to listing in Mailspike", "SpamBlock"),
    (
        550,
        None,
        ("JunkMail rejected - example.net [192.0.2.1] is in an RBL on psbl.surriel.com"),
        "SpamBlock",
    ),
    (
        554,
        "5.7.1",
        ("Message rejected. Too many users complained about mail from this source"),
        "SpamBlock",
    ),
    (
        550,
        "5.7.1",
        "Mail from dynamic IP 192.0.2.1 refused; use your provider's relay",
        "SpamBlock",
    ),
    (554, "5.7.1", "IP address is black listed (mxgmx011)", "SpamBlock"),
    # BadConfiguration: PTR, TLS, HELO
    (
        554,
        None,
        (
            "mxgmx112 Nemesis ESMTP Service not available; No SMTP service; Bad DNS "
            "PTR resource record."
        ),
        "BadConfiguration",
    ),
    (550, "5.7.1", "Fix reverse DNS for 192.0.2.1", "BadConfiguration"),
    (
        450,
        "4.7.25",
        "Client host rejected: cannot find your reverse hostname, [192.0.2.1]",
        "BadConfiguration",
    ),
    (
        550,
        "5.7.25",
        (
            "[192.0.2.1] The IP address sending this message does not have a PTR "
            "record setup, or the corresponding forward DNS entry does not match "
            "the sending IP."
        ),
        "BadConfiguration",
    ),
    (554, None, "rdns lookup for 192.0.2.1 failed; rejecting", "BadConfiguration"),
    (550, None, "no host name found for IP address 192.0.2.1", "BadConfiguration"),
    (
        421,
        None,
        (
            "Comcast requires that all mail servers must have a PTR record with a "
            "valid Reverse DNS entry. RV000001"
        ),
        "BadConfiguration",
    ),
    (530, "5.7.0", "Must issue a STARTTLS command first.", "BadConfiguration"),
    (550, "5.7.10", "TLS is required for this domain, please use STARTTLS", "BadConfiguration"),
    (
        504,
        "5.5.2",
        "<mail>: Helo command rejected: need fully-qualified hostname",
        "BadConfiguration",
    ),
    (550, None, "Invalid HELO name (See RFC2821 4.1.1.1)", "BadConfiguration"),
    # AuthenticationFailed
    (
        550,
        "5.7.26",
        (
            "This message does not pass authentication checks (SPF and DKIM both do "
            "not pass). SPF check for [example.com] does not pass with ip: "
            "[192.0.2.1]."
        ),
        "AuthenticationFailed",
    ),
    (
        550,
        "5.7.26",
        (
            "Unauthenticated email from example.com is not accepted due to domain's "
            "DMARC policy. Please contact the administrator of example.com domain."
        ),
        "AuthenticationFailed",
    ),
    (
        421,
        "4.7.27",
        (
            "Your email has been rate limited because SPF authentication didn't "
            "pass for this message."
        ),
        "AuthenticationFailed",
    ),
    (
        550,
        "5.7.9",
        (
            "This mail has been blocked because the sender is unauthenticated. "
            "Yahoo requires all senders to authenticate with either SPF or DKIM."
        ),
        "AuthenticationFailed",
    ),
    (554, "5.7.5", "Permanent error evaluating DMARC policy", "AuthenticationFailed"),
    (550, "5.7.1", "Email rejected per DMARC policy for example.com", "AuthenticationFailed"),
    (
        550,
        "5.7.23",
        ("The message was rejected because of Sender Policy Framework violation: SPF fail"),
        "AuthenticationFailed",
    ),
    (
        550,
        None,
        "SPF: 192.0.2.1 is not allowed to send mail from example.com",
        "AuthenticationFailed",
    ),
    (550, "5.7.20", "message does not have a valid DKIM signature", "AuthenticationFailed"),
    (
        550,
        "5.7.509",
        (
            "Access denied, sending domain [example.com] does not pass DMARC "
            "verification and has a DMARC policy of reject."
        ),
        "AuthenticationFailed",
    ),
    (550, "5.7.1", "Rejected by header based Anti-Spoofing policy: example.com", "PolicyRelated"),
    # BadDomain, DNSFailure
    (
        550,
        "5.1.2",
        ("<someone@nosuch.example>... Host unknown (Name server: nosuch.example: host not found)"),
        "BadDomain",
    ),
    (
        550,
        "5.4.310",
        (
            "DNS domain nosuch.example does not exist "
            "[Message=InfoDomainNonexistent] "
            "[LastAttemptedServerName=nosuch.example]"
        ),
        "BadDomain",
    ),
    (550, "5.4.4", "SMTPSEND.DNS.NonExistentDomain; nonexistent domain", "BadDomain"),
    (
        550,
        None,
        (
            "DNS Error: DNS type 'mx' lookup of nosuch.example responded with code "
            "NXDOMAIN Domain name not found: nosuch.example"
        ),
        "BadDomain",
    ),
    (550, None, 'Unrouteable mail domain "nosuch.example"', "BadDomain"),
    (550, None, "all relevant MX records point to non-existent hosts", "BadDomain"),
    (
        553,
        "5.1.2",
        (
            "We weren't able to find the recipient domain. Please check for any "
            "spelling errors, and make sure you didn't enter any spaces, periods, "
            "or other punctuation after the recipient's email address."
        ),
        "BadDomain",
    ),
    (
        550,
        None,
        "DNS Error: DNS server returned answer with no data for nosuch.example",
        "BadDomain",
    ),
    (554, None, "delivery error: no such domain nosuch.example", "BadDomain"),
    (
        451,
        "4.4.0",
        ("DNS query failed. The error was: DNS query failed with error: ServerFailure"),
        "DNSFailure",
    ),
    (
        451,
        None,
        ("DNS Error: DNS type 'mx' lookup of example.com responded with code SERVFAIL"),
        "DNSFailure",
    ),
    (451, None, "DNS Error: Could not contact DNS servers", "DNSFailure"),
    (451, "4.4.3", "Temporary DNS failure looking up example.com, try again later", "DNSFailure"),
    (451, None, "Temporary lookup failure", "DNSFailure"),
    (451, None, "DNS lookup error for example.com", "DNSFailure"),
    # InvalidSender
    (
        553,
        "5.1.8",
        (
            "<bounces@nosuch.example>... Domain of sender address "
            "bounces@nosuch.example does not exist"
        ),
        "InvalidSender",
    ),
    (550, "5.1.8", "Access denied, bad outbound sender.", "InvalidSender"),
    (
        451,
        "4.1.8",
        "Domain of sender address bounces@example.com does not resolve",
        "InvalidSender",
    ),
    (550, None, "Sender domain must exist", "InvalidSender"),
    (
        553,
        "5.1.7",
        ("The sender address <bounces@@example.com> is not a valid RFC-5321 address."),
        "InvalidSender",
    ),
    (550, "5.7.27", "Sender address has null MX", "InvalidSender"),
    (
        550,
        None,
        ("Verification failed for <bounces@example.com> Unrouteable address Sender verify failed"),
        "InvalidSender",
    ),
    (550, "5.1.0", "<bounces@example.com> sender rejected: invalid sender domain", "InvalidSender"),
    # InvalidRecipient
    (
        550,
        "5.1.1",
        (
            "<someone@example.net>: Recipient address rejected: User unknown in "
            "relay recipient table"
        ),
        "InvalidRecipient",
    ),
    (550, "5.1.1", "<someone@example.net>... User unknown", "InvalidRecipient"),
    (
        553,
        "5.3.0",
        "<someone@example.net>... Addressee unknown, relay=[192.0.2.1]",
        "InvalidRecipient",
    ),
    (
        550,
        "5.1.1",
        (
            "someone@example.net: Recipient address rejected: undeliverable "
            "address: host mx[192.0.2.2] said: 550 5.1.1 unknown user"
        ),
        "InvalidRecipient",
    ),
    (
        550,
        None,
        (
            "Message was not accepted -- invalid mailbox. Local mailbox "
            "someone@mail.ru is unavailable: user not found"
        ),
        "InvalidRecipient",
    ),
    (
        550,
        "5.5.0",
        ("Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]"),
        "InvalidRecipient",
    ),
    (550, "5.1.1", "<someone@comcast.net> Not our Customer", "InvalidRecipient"),
    (
        550,
        None,
        ("Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550 [aBcDeF.uk4]"),
        "InvalidRecipient",
    ),
    (550, "5.1.1", "<someone@att.net>... No such user here", "InvalidRecipient"),
    (
        550,
        "5.1.1",
        "Requested action not taken: mailbox unavailable (mxgmx102)",
        "InvalidRecipient",
    ),
    (
        550,
        "5.1.1",
        (
            "The email account that you tried to reach does not exist. Please try "
            "double-checking the recipient's email address for typos"
        ),
        "InvalidRecipient",
    ),
    (550, "", "User jdoe (jdoe@corp.example) not listed in Domino Directory", "InvalidRecipient"),
    (550, "5.0.0", "Recipient not listed in public Name and Address Book", "InvalidRecipient"),
    (550, "", "'someone@vnet.example' is not a registered gateway user", "InvalidRecipient"),
    (554, "5.7.1", "Service unavailable; client host listed in zen.spamhaus.org", "SpamBlock"),
    (
        554,
        "5.1.1",
        (
            "delivery error: dd This user doesn't have a yahoo.com account "
            "(someone@yahoo.com) [0] - mta1234.mail.bf1.yahoo.com"
        ),
        "InvalidRecipient",
    ),
    (
        550,
        "5.1.10",
        (
            "RESOLVER.ADR.RecipientNotFound; Recipient someone@example.com not "
            "found by SMTP address lookup"
        ),
        "InvalidRecipient",
    ),
    (550, "5.1.1", "RESOLVER.ADR.ExRecipNotFound; not found", "InvalidRecipient"),
    (550, None, "No such recipient", "InvalidRecipient"),
    (511, None, "sorry, no mailbox here by that name (#5.1.1)", "InvalidRecipient"),
    (550, "5.1.1", "Mailbox does not exist", "InvalidRecipient"),
    # InactiveMailbox
    (550, "5.2.1", "The email account that you tried to reach is inactive.", "InactiveMailbox"),
    (554, "5.2.1", "This account has been disabled or discontinued [#102]", "InactiveMailbox"),
    (550, None, "User is terminated", "InactiveMailbox"),
    (
        550,
        "5.2.1",
        "<someone@example.net>: Mailbox disabled, not accepting messages",
        "InactiveMailbox",
    ),
    (
        550,
        None,
        (
            "Message was not accepted -- invalid mailbox. Local mailbox "
            "someone@mail.ru is unavailable: account is disabled"
        ),
        "InactiveMailbox",
    ),
    (
        550,
        "5.2.1",
        ("Adresse d au moins un destinataire desactivee. Recipient account is suspended."),
        "InactiveMailbox",
    ),
    (550, "5.7.17", "Mailbox owner has changed", "InactiveMailbox"),
    # QuotaIssues
    (
        552,
        "5.2.2",
        "Boite du destinataire pleine. Recipient overquota. OFR_417 [417]",
        "QuotaIssues",
    ),
    (452, "4.2.2", "<someone@att.net>... Mailbox over quota", "QuotaIssues"),
    (552, None, "Requested mail action aborted: exceeded storage allocation", "QuotaIssues"),
    (452, None, "Mailbox size limit exceeded", "QuotaIssues"),
    (
        554,
        "5.2.2",
        (
            "mailbox full; "
            "STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuota; "
            "Failed to process message due to a permanent exception"
        ),
        "QuotaIssues",
    ),
    (522, None, "The recipient has exceeded their mailbox limit", "QuotaIssues"),
    (452, "4.2.2", "Mailbox quota exceeded for someone@gmx.net", "QuotaIssues"),
    # SpamContent, ContentRelated, VirusRelated, ProhibitedAttachment
    (
        550,
        None,
        (
            "spam message rejected. Please visit "
            "http://help.mail.ru/notspam-support/id?c=abc or report details to "
            "abuse@corp.mail.ru"
        ),
        "SpamContent",
    ),
    (
        554,
        None,
        (
            "Email rejected due to security policies - MCSpamSignature.x.y - "
            "https://community.mimecast.com/docs/DOC-1369#554"
        ),
        "SpamContent",
    ),
    (550, "5.7.1", "Message rejected as high-probability spam", "SpamContent"),
    (554, "5.7.1", "Blocked - intent analysis: message contains a blocked URL", "SpamContent"),
    (554, "5.7.1", "Message rejected: phishing attempt suspected", "SpamContent"),
    (
        550,
        "5.7.1",
        (
            "Your message looks like SPAM or has been reported as SPAM please read "
            "https://example.net/spam"
        ),
        "SpamContent",
    ),
    (550, "5.7.1", "Message rejected because it contains a link listed in SURBL", "SpamContent"),
    (
        550,
        "5.7.1",
        (
            "Messages missing a valid address in From: header, or having no From: "
            "header, are not accepted."
        ),
        "ContentRelated",
    ),
    (
        550,
        "5.7.1",
        ("This message is not RFC 5322 compliant. There are multiple Subject headers."),
        "ContentRelated",
    ),
    (
        550,
        "5.7.512",
        (
            "Access denied, message must be RFC 5322 section 3.6.2 compliant and "
            "include a valid From address"
        ),
        "ContentRelated",
    ),
    (
        554,
        "5.6.0",
        ("Corrupt message content; STOREDRV.Deliver.Exception:ConversionFailedException"),
        "ContentRelated",
    ),
    (
        550,
        "5.2.3",
        "RESOLVER.RST.RecipSizeLimit; message too large for this recipient",
        "ContentRelated",
    ),
    (552, None, "Message size exceeds maximum value", "ContentRelated"),
    (550, None, "Message content rejected", "ContentRelated"),
    (554, "5.7.1", "Message rejected due to content restrictions", "ContentRelated"),
    (554, "5.7.0", "Reject, id=12345-01 - INFECTED: Win.Trojan.Agent", "VirusRelated"),
    (550, None, "Virus detected: Eicar-Signature", "VirusRelated"),
    (
        552,
        "5.7.0",
        (
            "Our system detected an illegal attachment on your message. Please "
            "visit http://mail.google.com/support/bin/answer.py?answer=6590 to "
            "review our attachment guidelines."
        ),
        "ProhibitedAttachment",
    ),
    (550, None, "Attachment type not allowed (.js)", "ProhibitedAttachment"),
    (554, "5.7.1", "Message blocked: prohibited file extension .exe", "ProhibitedAttachment"),
    # PolicyRelated
    (
        550,
        None,
        ("Envelope blocked - User Entry - https://community.mimecast.com/docs/DOC-1369#550"),
        "PolicyRelated",
    ),
    (
        550,
        "5.7.1",
        (
            "The user or domain that you are sending to (or from) has a policy that "
            "prohibited the mail that you sent."
        ),
        "PolicyRelated",
    ),
    (
        554,
        None,
        "Message not allowed - [PH01] Email not accepted for policy reasons.",
        "PolicyRelated",
    ),
    (
        550,
        "5.7.1",
        (
            "[HM08] Message rejected due to local policy. Please visit "
            "https://support.apple.com/en-us/HT204137"
        ),
        "PolicyRelated",
    ),
    (550, "5.7.1", "Delivery not authorized, message refused", "PolicyRelated"),
    (
        550,
        "5.7.133",
        "RESOLVER.RST.SenderNotAuthenticatedForGroup; authentication required",
        "PolicyRelated",
    ),
    (
        550,
        "5.7.520",
        "Access denied, Your organization does not allow external forwarding.",
        "PolicyRelated",
    ),
    (554, "5.7.1", "<someone@example.net>: Client host rejected: Access denied", "PolicyRelated"),
    (550, None, "Mail refused", "PolicyRelated"),
    # RelayDenied, RoutingErrors, MessageExpired, NoAnswerFromHost, BadConnection
    (
        550,
        "5.4.1",
        ("Relay Access Denied ATTR36 [DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]"),
        "RelayDenied",
    ),
    (
        550,
        "5.7.1",
        ("<someone@example.net>... Relaying denied. Proper authentication required."),
        "RelayDenied",
    ),
    (554, "5.7.1", "<someone@example.net>: Relay access denied", "RelayDenied"),
    (550, None, "we do not relay for example.net", "RelayDenied"),
    (554, "5.4.6", "Routing loop detected -- too many Received: headers", "RoutingErrors"),
    (554, None, "mail for example.net loops back to myself", "RoutingErrors"),
    (550, "5.4.300", "Message expired", "MessageExpired"),
    (
        550,
        "5.4.316",
        "Message expired, connection refused(Socket error code 10061)",
        "MessageExpired",
    ),
    (451, "4.4.316", "Connection refused [Message=Socket error code 10061]", "NoAnswerFromHost"),
    (
        451,
        None,
        (
            "conversation with mx.example.net[192.0.2.25] timed out while receiving "
            "the initial server greeting"
        ),
        "NoAnswerFromHost",
    ),
    (421, "4.4.2", "Connection dropped due to SocketError", "BadConnection"),
    (451, None, "TLS handshake failed: unexpected eof while reading", "BadConnection"),
    # TransientFailure, ProtocolErrors, TooManyRecipients
    (451, "4.7.1", "Greylisting in action, please come back later", "TransientFailure"),
    (
        451,
        None,
        (
            "Internal resources are temporarily unavailable - "
            "https://community.mimecast.com/docs/DOC-1369#451"
        ),
        "TransientFailure",
    ),
    (452, "4.4.5", "Insufficient disk space; try again later", "TransientFailure"),
    (451, "4.3.0", "Requested action aborted: local error in processing", "TransientFailure"),
    (503, "5.5.0", "Improper use of SMTP command pipelining", "ProtocolErrors"),
    (554, "5.5.0", "SMTP synchronization error", "ProtocolErrors"),
    (
        550,
        "5.6.11",
        (
            "SMTPSEND.BareLinefeedsAreIllegal; message contains bare linefeeds, "
            "which cannot be sent via DATA"
        ),
        "ProtocolErrors",
    ),
    (452, "4.5.3", "Too many recipients", "TooManyRecipients"),
]


@pytest.mark.parametrize(("code", "enhanced", "text", "expected"), REPLIES)
def test_classify_real_world_replies(
    code: int, enhanced: str | None, text: str, expected: str
) -> None:
    assert CLASSIFIER.classify(Reply(code, enhanced or "", text)) == expected


@pytest.mark.parametrize(("code", "enhanced", "text", "expected"), MORE_REPLIES)
def test_classify_more_real_world_replies(
    code: int, enhanced: str | None, text: str, expected: str
) -> None:
    assert CLASSIFIER.classify(Reply(code, enhanced or "", text)) == expected


def test_the_table_has_enough_real_world_replies() -> None:
    assert len([r for r in REPLIES if r[2] != "Sorry"]) >= 40
    assert len(MORE_REPLIES) >= 150
    categories = {row[3] for row in MORE_REPLIES}
    assert len(categories) >= 20


def test_builtin_table_uses_known_categories_and_compiles() -> None:
    for entry in BUILTIN_TABLE:
        assert entry.category in set(Category)
        assert entry.reason
        re.compile(entry.regex)


def test_operator_rules_override_builtin_rules() -> None:
    reply = Reply(550, "5.1.1", "<someone@example.org>: user does not exist")
    assert CLASSIFIER.classify(reply) == "InvalidRecipient"
    classifier = BounceClassifier(
        [
            Rule("SpamBlock", re.compile(r"^550 5\.1\.1 <\S+@example\.org>")),
            Rule("ExampleOrgQuirk", re.compile(r"example\.org")),
        ]
    )
    assert classifier.classify(reply) == "SpamBlock"
    other = Reply(550, "", "no thanks, example.org")
    assert classifier.classify(other) == "ExampleOrgQuirk"
    assert classifier.classify(Reply(552, "5.2.2", "Mailbox full")) == "QuotaIssues"


def test_rule_subject_has_no_enhanced_code_when_absent() -> None:
    classifier = BounceClassifier([Rule("Odd", re.compile(r"^550 Odd$"))])
    assert classifier.classify(Reply(550, "", "Odd")) == "Odd"


RULE_FILE = """
[[rule]]
category = "SpamBlock"
pattern = '(?i)blocked by CustomRBL'

[[rule]]
category = "AcmeGateway"
pattern = '^554 5\\.7\\.1 ACME-\\d+'
"""


def test_load_rules_and_use_them(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULE_FILE)
    rules = load_rules(path)
    assert [rule.category for rule in rules] == ["SpamBlock", "AcmeGateway"]
    classifier = BounceClassifier(rules)
    assert classifier.classify(Reply(554, "5.7.1", "ACME-42 rejected")) == "AcmeGateway"
    assert classifier.classify(Reply(550, "", "BLOCKED BY CUSTOMRBL")) == "SpamBlock"


def test_empty_rule_file_has_no_rules() -> None:
    assert parse_rules("", "rules.toml") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]\n", "rules.toml: not valid TOML"),
        ("rules = []\n", "rules.toml: unknown key 'rules'"),
        ('rule = "x"\n', "rules.toml: 'rule' must be an array of tables"),
        ("rule = [1]\n", "rules.toml: rule 1: expected a table"),
        ('[[rule]]\npattern = "x"\n', "rules.toml: rule 1: category must be"),
        ('[[rule]]\ncategory = ""\npattern = "x"\n', "rules.toml: rule 1: category must be"),
        (
            '[[rule]]\ncategory = "Spam Block"\npattern = "x"\n',
            "rules.toml: rule 1: category must be",
        ),
        (
            '[[rule]]\ncategory = "spamblock"\npattern = "x"\n',
            "rules.toml: rule 1: category 'spamblock': did you mean 'SpamBlock'?",
        ),
        ('[[rule]]\ncategory = "SpamBlock"\n', "rules.toml: rule 1: pattern must be"),
        ('[[rule]]\ncategory = "SpamBlock"\npattern = 5\n', "rules.toml: rule 1: pattern must be"),
        (
            '[[rule]]\ncategory = "SpamBlock"\npattern = "x"\n'
            '[[rule]]\ncategory = "SpamBlock"\npattern = "(unclosed"\n',
            "rules.toml: rule 2: pattern '(unclosed' is not a valid regex",
        ),
        (
            '[[rule]]\ncategory = "SpamBlock"\npattern = "x"\npatern = "y"\n',
            "rules.toml: rule 1: unknown key 'patern'",
        ),
    ],
)
def test_rule_file_errors(text: str, message: str) -> None:
    with pytest.raises(RuleFileError) as info:
        parse_rules(text, "rules.toml")
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)


def test_unreadable_rule_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(RuleFileError, match=r"missing\.toml: cannot read rule file"):
        load_rules(path)


def test_rule_file_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\ncategory = "X"\npattern = "["\n')
    with pytest.raises(RuleFileError, match=r"rules\.toml: rule 1: pattern"):
        load_rules(path)


# The stage a reply answers.

STAGE_REPLIES = [
    # After DATA every recipient was accepted: a "user unknown" is a content filter's.
    (550, "5.1.1", "User unknown", Stage.DOT, "ContentRelated"),
    (
        554,
        "5.1.1",
        "<someone@example.net>: Recipient address rejected: User unknown",
        Stage.DATA,
        "ContentRelated",
    ),
    (550, None, "Requested action not taken: mailbox unavailable", Stage.DOT, "ContentRelated"),
    (550, "5.1.1", "Sorry", Stage.BDAT, "ContentRelated"),
    (550, "5.1.1", "User unknown", Stage.RCPT, "InvalidRecipient"),
    (550, None, "Requested action not taken: mailbox unavailable", Stage.RCPT, "InvalidRecipient"),
    (550, "5.1.1", "User unknown", None, "InvalidRecipient"),
    (552, "5.2.2", "Mailbox full", Stage.DOT, "QuotaIssues"),
    (554, "5.7.1", "Message rejected as spam", Stage.DOT, "SpamContent"),
    (451, "4.5.0", "malformed reply (no code: 'garbage')", Stage.DOT, "ProtocolErrors"),
    # At MAIL FROM an address or domain that does not exist is the sender's.
    (550, None, "Domain not found", Stage.MAIL, "InvalidSender"),
    (550, None, "Domain not found", Stage.RCPT, "BadDomain"),
    (553, "5.1.1", "Address does not exist", Stage.MAIL, "InvalidSender"),
    (550, None, "No such domain at this location", Stage.MAIL, "InvalidSender"),
    (450, "4.1.2", "Unverifiable address", Stage.MAIL, "InvalidSender"),
    (421, "4.7.0", "Too many connections", Stage.MAIL, "RateLimited"),
    (
        554,
        "5.7.1",
        "Client host [192.0.2.1] blocked using zen.spamhaus.org",
        Stage.MAIL,
        "SpamBlock",
    ),
]


@pytest.mark.parametrize(("code", "enhanced", "text", "stage", "expected"), STAGE_REPLIES)
def test_the_stage_decides_where_it_matters(
    code: int, enhanced: str | None, text: str, stage: Stage | None, expected: str
) -> None:
    assert CLASSIFIER.classify(Reply(code, enhanced or "", text, stage)) == expected


@pytest.mark.parametrize(
    ("text", "stage"),
    [
        (
            (
                "host mx.example.net[192.0.2.25] said: 550 5.1.1 <someone@example.net>: "
                "Recipient address rejected: User unknown (in reply to RCPT TO command)"
            ),
            Stage.RCPT,
        ),
        (
            (
                "host mx.example.net[192.0.2.25] said: 554 5.7.1 Message rejected (in "
                "reply to end of DATA command)"
            ),
            Stage.DOT,
        ),
        (
            ("host mx.example.net said: 554 5.5.1 No valid recipients (in reply to DATA command)"),
            Stage.DATA,
        ),
        (
            ("host mx.example.net said: 553 5.1.8 Bad sender (in reply to MAIL FROM command)"),
            Stage.MAIL,
        ),
        (
            ("host mx.example.net[192.0.2.25] refused to talk to me: 554 No SMTP service here"),
            Stage.GREETING,
        ),
        (
            (
                "SMTP error from remote mail server after RCPT "
                "TO:<someone@example.net>: 550 5.1.1 No such user"
            ),
            Stage.RCPT,
        ),
        (
            (
                "SMTP error from remote mail server after pipelined RCPT "
                "TO:<a@example.net>: 550 unknown"
            ),
            Stage.RCPT,
        ),
        (
            ("SMTP error from remote mail server after end of data: 550 5.7.1 Content rejected"),
            Stage.DOT,
        ),
        (
            (
                "SMTP error from remote mail server after MAIL FROM:<b@example.com> "
                "SIZE=2048: 550 no"
            ),
            Stage.MAIL,
        ),
        (
            ("SMTP error from remote mail server after initial connection: 554 go away"),
            Stage.GREETING,
        ),
        ("SMTP error from remote mail server after EHLO mta.example.com: 550 bad helo", Stage.EHLO),
        ("rejected after DATA: your message looks like spam", Stage.DOT),
        (
            (
                "... while talking to mx.example.net.: >>> RCPT "
                "To:<someone@example.net> <<< 550 5.1.1 User unknown"
            ),
            Stage.RCPT,
        ),
        (
            (
                "... while talking to mx.example.net.: >>> DATA <<< 354 Go ahead <<< "
                "554 5.7.1 Rejected"
            ),
            Stage.DOT,
        ),
        ("... while talking to mx.example.net.: >>> DATA <<< 554 5.5.1 No recipients", Stage.DATA),
        ("Remote server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'", None),
        ("", None),
    ],
)
def test_stage_from_text(text: str, stage: Stage | None) -> None:
    assert stage_from_text(text) is stage


def test_a_dsn_classifies_like_the_session_it_reports() -> None:
    text = "550 5.1.1 <someone@example.net>: User unknown (in reply to end of DATA command)"
    dsn = Reply(550, "5.1.1", text, stage_from_text(text))
    assert CLASSIFIER.classify(dsn) == "ContentRelated"
    text = "550 5.1.1 <someone@example.net>: User unknown (in reply to RCPT TO command)"
    assert (
        CLASSIFIER.classify(Reply(550, "5.1.1", text, stage_from_text(text))) == "InvalidRecipient"
    )


# Enhanced status codes: every subject and every registered detail.

REGISTERED_DETAILS = {0: 0, 1: 10, 2: 4, 3: 6, 4: 7, 5: 6, 6: 10, 7: 30}
"""The highest detail of each subject in the IANA registry (x.0.0 ... x.7.30)."""


def test_every_registered_enhanced_status_has_a_category() -> None:
    assert set(SUBJECT_CATEGORIES) == set(REGISTERED_DETAILS)
    for subject, highest in REGISTERED_DETAILS.items():
        for detail in range(1, highest + 1):
            assert (subject, detail) in STATUS_CATEGORIES, f"x.{subject}.{detail}"
    assert max(d for _, d in STATUS_CATEGORIES) <= max(REGISTERED_DETAILS.values())


@pytest.mark.parametrize(
    ("code", "enhanced", "expected"),
    [
        (550, "5.1.0", "InvalidRecipient"),
        (550, "5.1.2", "BadDomain"),
        (550, "5.1.8", "InvalidSender"),
        (550, "5.1.99", "InvalidRecipient"),
        (550, "5.2.0", "InactiveMailbox"),
        (452, "4.2.0", "InactiveMailbox"),
        (552, "5.2.3", "ContentRelated"),
        (550, "5.2.4", "RoutingErrors"),
        (554, "5.3.0", "TransientFailure"),
        (452, "4.3.1", "QuotaIssues"),
        (554, "5.3.5", "BadConfiguration"),
        (554, "5.4.0", "RoutingErrors"),
        (451, "4.4.2", "BadConnection"),
        (554, "5.4.6", "RoutingErrors"),
        (554, "5.5.0", "ProtocolErrors"),
        (452, "4.5.3", "TooManyRecipients"),
        (554, "5.6.7", "InvalidRecipient"),
        (554, "5.6.0", "ContentRelated"),
        (550, "5.7.0", "PolicyRelated"),
        (550, "5.7.18", "BadDomain"),
        (550, "5.7.25", "BadConfiguration"),
        (451, "4.7.28", "RateLimited"),
        (550, "5.7.29", "AuthenticationFailed"),
        (550, "5.7.30", "BadConfiguration"),
        (550, "5.0.0", "Uncategorized"),
        (450, "4.0.0", "TransientFailure"),
    ],
)
def test_enhanced_status_alone(code: int, enhanced: str, expected: str) -> None:
    assert CLASSIFIER.classify(Reply(code, enhanced, "Sorry")) == expected


def test_status_categories_for_any_class_and_unknown_details() -> None:
    assert status_category(EnhancedCode(4, 1, 1)) is Category.INVALID_RECIPIENT
    assert status_category(EnhancedCode(5, 7, 606)) is Category.POLICY_RELATED
    assert status_category(EnhancedCode(5, 9, 1)) is Category.UNCATEGORIZED
    assert is_definitive(EnhancedCode(5, 1, 1))
    assert not is_definitive(EnhancedCode(5, 7, 1))
    assert not is_definitive(EnhancedCode(5, 1, 0))
    assert not is_definitive(EnhancedCode(5, 7, 606))


@pytest.mark.parametrize(
    ("code", "enhanced", "text", "expected"),
    [
        (
            550,
            "5.1.1",
            "<someone@example.net>: Recipient address rejected: Access denied",
            "InvalidRecipient",
        ),
        (550, "5.2.1", "Mailbox refused by policy", "InactiveMailbox"),
        (550, "5.7.1", "Recipient refused by policy", "PolicyRelated"),
        (550, "5.1.0", "Address blocked by policy", "PolicyRelated"),
    ],
)
def test_a_definitive_status_beats_vague_wording(
    code: int, enhanced: str, text: str, expected: str
) -> None:
    assert CLASSIFIER.classify(Reply(code, enhanced, text)) == expected


# Precise wording against look-alikes.


@pytest.mark.parametrize(
    ("code", "enhanced", "text"),
    [
        (
            553,
            "5.1.8",
            (
                "<bounces@nosuch.example>... Domain of sender address "
                "bounces@nosuch.example does not exist"
            ),
        ),
        (550, "5.1.8", "Sender address rejected: Domain does not exist"),
        (550, "5.1.8", "Mailbox does not exist"),
        (451, "4.1.8", "<bounces@example.com>: Sender address rejected: Domain not found"),
        (550, None, "<bounces@example.com>: Sender domain not found"),
        (550, None, "Sender's domain does not exist"),
        (550, "5.1.8", "Access denied, bad outbound sender."),
    ],
)
def test_the_senders_domain_is_not_the_recipient(
    code: int, enhanced: str | None, text: str
) -> None:
    assert CLASSIFIER.classify(Reply(code, enhanced or "", text)) == "InvalidSender"


@pytest.mark.parametrize(
    ("code", "enhanced", "text", "expected"),
    [
        (
            550,
            "5.4.4",
            (
                "Host or domain name not found. Name service error for "
                "name=nosuch.example type=A: Host not found"
            ),
            "BadDomain",
        ),
        (
            451,
            "4.4.3",
            (
                "Host or domain name not found. Name service error for name=example.com "
                "type=MX: Host not found, try again"
            ),
            "DNSFailure",
        ),
        (
            550,
            None,
            ("DNS Error: DNS type 'mx' lookup of nosuch.example responded with code NXDOMAIN"),
            "BadDomain",
        ),
        (
            451,
            None,
            ("DNS Error: DNS type 'mx' lookup of example.com responded with code SERVFAIL"),
            "DNSFailure",
        ),
        (
            451,
            "4.4.0",
            ("DNS query failed. The error was: SMTPSEND.DNS.NonExistentDomain; nonexistent domain"),
            "BadDomain",
        ),
        (
            451,
            "4.4.0",
            ("DNS query failed. The error was: DNS query failed with error: ServerFailure"),
            "DNSFailure",
        ),
        (451, None, "DNS error: domain lookup timed out for example.com", "DNSFailure"),
        (550, None, "DNS error", "DNSFailure"),
    ],
)
def test_a_definitive_nxdomain_beats_a_dns_error_only_when_definitive(
    code: int, enhanced: str | None, text: str, expected: str
) -> None:
    assert CLASSIFIER.classify(Reply(code, enhanced or "", text)) == expected


@pytest.mark.parametrize(
    ("code", "enhanced", "text", "expected"),
    [
        (
            550,
            "5.7.1",
            "Message rejected. See https://mail.example.net/help/spf-dkim.html",
            "PolicyRelated",
        ),
        (554, "5.7.1", "Client host [192.0.2.1] blocked using spfbl.net", "SpamBlock"),
        (
            550,
            "5.1.1",
            "<spf@example.net>: Recipient address rejected: User unknown",
            "InvalidRecipient",
        ),
        (550, None, "Mailbox dmarc-reports@example.net is full", "QuotaIssues"),
        (
            550,
            None,
            ("Requested action not taken: mailbox unavailable (see www.example.net/dkim)"),
            "InvalidRecipient",
        ),
        (552, None, "Message size exceeds the DKIM-safe limit of 10 MB", "ContentRelated"),
        (550, "5.7.23", "SPF check failed for example.com", "AuthenticationFailed"),
        (550, None, "message failed DKIM verification", "AuthenticationFailed"),
        (550, None, "Rejected: DMARC policy of reject for example.com", "AuthenticationFailed"),
    ],
)
def test_spf_dkim_dmarc_need_authentication_wording(
    code: int, enhanced: str | None, text: str, expected: str
) -> None:
    assert CLASSIFIER.classify(Reply(code, enhanced or "", text)) == expected


def test_rate_limits_are_transient_categories() -> None:
    assert Category.RATE_LIMITED in TRANSIENT_CATEGORIES
    assert Category.TOO_MANY_RECIPIENTS in TRANSIENT_CATEGORIES
    assert Category.INVALID_RECIPIENT not in TRANSIENT_CATEGORIES


def test_every_builtin_rule_decides_some_reply() -> None:
    """A rule no reply reaches is shadowed by an earlier one, or untested."""
    replies = [Reply(c, e or "", t) for c, e, t, _ in (*REPLIES, *MORE_REPLIES)]
    replies += [Reply(c, e or "", t, s) for c, e, t, s, _ in STAGE_REPLIES]
    decided = {CLASSIFIER.decide(reply).entry for reply in replies}
    assert [entry.regex for entry in BUILTIN_TABLE if entry not in decided] == []


def test_decide_names_the_rule() -> None:
    decision = CLASSIFIER.decide(Reply(550, "5.1.1", "User unknown"))
    assert decision.entry is not None and "does not exist" in decision.entry.reason
    assert CLASSIFIER.decide(Reply(550, "5.1.1", "Sorry")).entry is None


def test_the_labelled_diagnostics_are_well_formed_and_agreed_on() -> None:
    rows = load_diagnostics(DIAGNOSTICS)
    assert len(rows) >= 300
    assert {row.expected for row in rows} <= {c.value for c in Category}
    assert len({row.expected for row in rows}) >= 20
    agreed = sum(CLASSIFIER.classify(row.reply) == row.expected for row in rows)
    assert agreed / len(rows) >= 0.97


def test_a_diagnostic_line_is_read_as_a_reply() -> None:
    assert parse_reply("550 5.1.1 no such user", Stage.RCPT) == Reply(
        550, "5.1.1", "no such user", Stage.RCPT
    )
    assert parse_reply("421 Too many connections", None) == Reply(421, "", "Too many connections")


def test_a_huge_reply_is_read_up_to_the_limit() -> None:
    junk = "dns lookup of the spf user mailbox " * 20_000
    assert CLASSIFIER.classify(Reply(550, "", junk + "user unknown")) != "InvalidRecipient"
    assert CLASSIFIER.classify(Reply(550, "", "user unknown " + junk)) == "InvalidRecipient"


def test_a_protocol_error_at_mail_from_is_not_about_the_sender() -> None:
    reply = Reply(500, "5.5.1", "Unknown command", Stage.MAIL)
    assert CLASSIFIER.classify(reply) == "ProtocolErrors"
    reply = Reply(501, "5.5.4", "Invalid parameter SMTPUTF8", Stage.MAIL)
    assert CLASSIFIER.classify(reply) == "ProtocolErrors"
