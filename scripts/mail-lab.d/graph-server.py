#!/usr/bin/env python3
"""The mail lab's stand-in for Microsoft Graph's mail API (v1.0), for the "graph" protocol.

No real Microsoft 365 can run on a loopback-only machine, so the lab has this one, written from
Microsoft's published v1.0 reference. It serves HTTPS with the lab's server certificate under
/v1.0, keeps everything in memory, and has control endpoints under /admin/ for the tests. Where
the reference is silent and this server had to choose, the text says "guess:" and what it assumed.

  graph-server.py --port PORT --cert PEM --key PEM --token-url http://127.0.0.1:OAUTH_PORT
                  [--smtp-port N] [--host 127.0.0.1]

Authentication (every /v1.0 request)
  "Authorization: Bearer <token>", checked by POSTing token=... to the lab token provider's
  /introspect (RFC 7662, mail-lab.d/token-server.py). A positive answer is cached until the
  token's exp, a negative one never (so a token revoked at the provider stays good here until
  its exp, as a self-contained Entra token does at Graph). Missing, unknown or expired: 401
  InvalidAuthenticationToken with a WWW-Authenticate: Bearer header; an aud other than
  https://graph.microsoft.com: 401 InvalidAuthenticationToken "Invalid audience."
    https://learn.microsoft.com/en-us/graph/auth-v2-service (app-only tokens, roles claim)
    https://learn.microsoft.com/en-us/graph/resolve-auth-errors
  Application permissions, from the token's roles claim
  (https://learn.microsoft.com/en-us/graph/permissions-reference):
    reading (folders, messages, $value, delta)       Mail.Read or Mail.ReadWrite
    PATCH, move, DELETE, permanentDelete, drafts     Mail.ReadWrite
    sendMail, send                                   Mail.Send
  else 403 ErrorAccessDenied "Access is denied. Check credentials and try again."
  Mailbox scoping: an app may be restricted to some mailboxes (POST /admin/policy), as an
  Exchange ApplicationAccessPolicy or RBAC for Applications management scope does
    https://learn.microsoft.com/en-us/graph/auth-limit-mailbox-access
    https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac
  Another mailbox then answers 403 ErrorAccessDenied "Access to OData is disabled: [RAOP] :
  Blocked by tenant configured AppOnly AccessPolicy settings." (the reference gives no body;
  this is the one Exchange Online sends). An unknown mailbox: 404 ErrorInvalidUser "The
  requested user '<u>' is invalid.". /me: 400 BadRequest, as for any app-only token.
  The mailbox in /users/{u}/ is the address (UPN), case-insensitive, percent-decoded.

Errors (https://learn.microsoft.com/en-us/graph/errors): every error body is
  {"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}
  and the response carries request-id and client-request-id headers (the request's
  client-request-id is echoed, else one is made up).

Mailboxes and folders (https://learn.microsoft.com/en-us/graph/api/resources/mailfolder)
  Each mailbox has the hidden root msgfolderroot with the well-known folders inbox ("Inbox", or
  the display name given to /admin/mailbox, e.g. "Posteingang"), drafts ("Drafts"), sentitems
  ("Sent Items"), deleteditems ("Deleted Items"), archive ("Archive") and junkemail ("Junk
  Email"), plus the folders given by display-name path ("Erledigt", "Posteingang/Shop"). The
  hidden recoverableitemsdeletions (where DELETE puts a message) and recoverableitemspurges
  (where permanentDelete puts it) are not children of msgfolderroot, so no listing shows them;
  they answer by their well-known names. Folder ids are random (AAMkAGI2...), never a name.
    GET /users/{u}/mailFolders                       children of msgfolderroot
    GET /users/{u}/mailFolders/{id}                  id, or well-known name (case-insensitive)
    GET /users/{u}/mailFolders/{id}/childFolders
  Lists page with $top (default 10) and @odata.nextLink (an absolute URL with $skip) and take
  $filter=displayName eq 'X' (guess: matched case-insensitively). Folder JSON: id, displayName,
  parentFolderId, childFolderCount, unreadItemCount, totalItemCount, sizeInBytes, isHidden.
  Unknown folder: 404 ErrorItemNotFound "The specified object was not found in the store."
  (guess: the reference names no code; this is Exchange's).

Messages (https://learn.microsoft.com/en-us/graph/api/resources/message)
  A message keeps its MIME bytes exactly as delivered; subject, from, sender, to/cc/bcc/replyTo,
  internetMessageId and sentDateTime come from its header (email package, policy default; a
  header that does not parse leaves them null, the message still lists). receivedDateTime is the
  delivery time (ISO 8601, Z). isRead, categories and extended properties are stored.
  Ids (https://learn.microsoft.com/en-us/graph/outlook-immutable-id): every message has an
  immutable id (AAkALg + 37 random base64url characters). With the request header
  Prefer: IdType="ImmutableId" every message id in the response is the immutable one; without
  it ids are "regular" ones (AAMkA + base64url of immutable id and a counter) that change each
  time the message moves to another folder, like Exchange's. Paths take both kinds; a regular id
  of a message that has moved since is 404 ErrorItemNotFound. (A client that forgets the header
  sees its stored ids go stale after a move.)
    GET /users/{u}/mailFolders/{f}/messages          and GET /users/{u}/messages (every folder
        under msgfolderroot): $top (default 10, at most 1000: guess, a larger $top is cut to
        1000), $skip, Prefer: odata.maxpagesize=N (the smaller of it and $top wins; answered by
        Preference-Applied), @odata.nextLink with $skip, $select (the selected properties plus
        id and @odata.etag; an unknown name is 400 as in Graph), $orderby=receivedDateTime
        [asc|desc] (guess: default desc, newest first, as Outlook lists), $filter with
        receivedDateTime ge|gt|le|lt <time>, isRead eq true|false, internetMessageId eq '<id>'
        joined by "and" (https://learn.microsoft.com/en-us/graph/filter-query-parameter).
        $expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08') (several ids may be
        joined with "or") adds "singleValueExtendedProperties": [{"id": "Integer 0xe08", "value":
        "<size of the MIME in bytes>"}] (PidTagMessageSize,
        https://learn.microsoft.com/en-us/graph/api/singlevaluelegacyextendedproperty-get). The
        reference documents the request form only; Graph echoes the id with the type name and
        the tag in lower-case hex without leading zeros ("Integer 0xe08"), as clients in the wild
        observe, and so does this server. Properties set by PATCH come back the same way.
    GET /users/{u}/messages/{id}  and  GET /users/{u}/mailFolders/{f}/messages/{id}
        (https://learn.microsoft.com/en-us/graph/api/message-get)
    GET .../messages/{id}/$value  the MIME bytes exactly as stored, 200, Content-Type: text/plain
        (message-get, "Example: get MIME content"; outlook-get-mime-message)
    PATCH /users/{u}/messages/{id}  categories, isRead, singleValueExtendedProperties
        ([{"id", "value"}]); other properties are ignored (guess). 200 with the message.
        (https://learn.microsoft.com/en-us/graph/api/message-update)
    POST .../messages/{id}/move {"destinationId": folder id or well-known name}: 201 with the
        moved message (https://learn.microsoft.com/en-us/graph/api/message-move). Unknown
        destination: 404 ErrorItemNotFound (guess: the reference names no error).
    DELETE .../messages/{id}: 204; the message goes to recoverableitemsdeletions
        (https://learn.microsoft.com/en-us/graph/api/message-delete).
    POST .../messages/{id}/permanentDelete: 204; to recoverableitemspurges
        (https://learn.microsoft.com/en-us/graph/api/message-permanentdelete).
    A message in those two folders still answers by its id (guess).

Delta (https://learn.microsoft.com/en-us/graph/delta-query-messages, .../graph/api/message-delta)
  GET /users/{u}/mailFolders/{f}/messages/delta with $select, $expand (as above), $top or
  Prefer: odata.maxpagesize=N (guess: 10 a page by default, as lists), $orderby=receivedDateTime
  desc, $filter=receivedDateTime ge|gt <time>, and the custom option changeType=created|updated|
  deleted. The first round lists the folder's messages; pages carry @odata.nextLink
  ($skiptoken), the last one @odata.deltaLink ($deltatoken). The deltaLink then returns what
  changed in that folder since: messages that came in (delivered, moved in, created) and
  messages whose isRead, categories or extended properties changed, as objects; messages that
  left it (moved out, deleted, permanently deleted) as {"@odata.type", "id", "@removed":
  {"reason": "deleted"}}, with the id the client last saw. The reference's example shows
  "deleted" for a deleted message and no other reason for messages; a move out is reported the
  same way (guess). Tokens are opaque and live in memory, in the nextLink or deltaLink that
  carries the query; they stay valid with or without the IdType header (as the immutable-id page
  says), and a nextLink may be fetched again (a retry after a lost answer gets the same page).
  An unknown or forgotten token (see /admin/expire-delta, or a mailbox reset): 410
  syncStateNotFound "The sync state generation is not found..." (errors page: code
  syncStateNotFound, status 410 Gone).

Sending (https://learn.microsoft.com/en-us/graph/outlook-send-mime-message)
  Only MIME is supported by this stand-in: a JSON message body answers 400 ErrorNotSupported.
    POST /users/{u}/sendMail with Content-Type: text/plain and the base64 MIME as body: 202,
        empty body (https://learn.microsoft.com/en-us/graph/api/user-sendmail). Bad base64: 400
        ErrorMimeContentInvalidBase64String "Invalid base64 string for MIME content." (the
        message is the reference's; the code is the one Graph sends with it). Line breaks in
        the base64 text are allowed (guess).
    POST /users/{u}/messages with the base64 MIME: 201, a draft in drafts
        (https://learn.microsoft.com/en-us/graph/api/user-post-messages).
    POST /users/{u}/messages/{id}/send: 202 (https://learn.microsoft.com/en-us/graph/api/
        message-send); the draft then moves to sentitems, keeping its immutable id, unless its
        extended property "Boolean 0x0E01" (PidTagDeleteAfterSubmit, [MS-OXOMSG]) is "true":
        then it is deleted (guess: gone without a trace, not in recoverableitemsdeletions).
        Sending a message that is not a draft: 400 ErrorInvalidOperation (guess).
  The MIME goes out as it is: the sender's sentitems gets a copy (sendMail with MIME always
  saves), every recipient of its To, Cc and Bcc headers that is a mailbox of this server gets
  the bytes unchanged in its inbox (guess: no Received line is added and Bcc is not removed),
  and the other recipients are handed to the lab's Postfix over SMTP on 127.0.0.1:--smtp-port
  with MAIL FROM the mailbox (line ends made CRLF on the wire). Postfix accepts
  <anything>@example.test there (Dovecot delivers it) and refuses other domains with 554
  "Relay access denied"; a refusal is recorded with the send, as is a Postfix that cannot be
  reached, which is retried every 2 s for 10 minutes. The From header is not checked against
  the mailbox (guess: Exchange would check SendAs rights; this server does not). Every send is
  recorded for the tests with its exact MIME (GET /admin/sent).

$batch (https://learn.microsoft.com/en-us/graph/json-batching)
  POST /v1.0/$batch {"requests": [{"id", "method", "url", "headers"?, "body"?, "dependsOn"?}]}.
  More than 20 requests, duplicate ids, a missing field or a dependsOn that names no request
  (or a cycle): 400 BadRequest (guess: the reference says 400 but gives no code or message).
  The outer request's token is checked first (401 for the whole batch). Each item then runs as if
  sent alone, with the outer request's headers under its own; "Prefer" is merged per preference,
  so Prefer: IdType="ImmutableId" may stand on the outer request or on an item (guess). A string
  body is the item's request body as is (for sendMail: the base64 MIME); a JSON body is JSON.
  Answer: {"responses": [{"id", "status", "headers", "body"?}]}, in the order the items ran; a
  JSON body is embedded as JSON, any other body (the $value MIME) as a base64 string (not in
  the reference: what clients observe from Graph), an empty one is left out. An item whose
  dependsOn failed answers 424. Items run one after another (guess, allowed by the reference:
  Outlook runs at most 4 items at a time, see throttling-limits#outlook-service-limits for JSON
  batching), each counting as one request for throttling, the concurrency limit and the log,
  so a batch holds at most one of a mailbox's 4 concurrency slots at a time.

Throttling (https://learn.microsoft.com/en-us/graph/throttling,
            https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits)
  At most 4 concurrent requests per app (client_id) and mailbox; the 5th answers 429
  ApplicationThrottled "Application is over its MailboxConcurrency limit." with Retry-After: 1.
  POST /admin/throttle makes the next n requests for a mailbox answer 429 ApplicationThrottled
  or 503 serviceNotAvailable with Retry-After. Each throttled answer is recorded (/admin/log).

Control endpoints (no authentication, JSON in and out, same HTTPS port):
  POST /admin/mailbox   {"mailbox", "inbox_name"?: "Inbox", "folders"?: ["Erledigt",
                        "Posteingang/Shop"]}: create, or reset to empty, a mailbox with its
                        well-known folders and these folders (display-name paths; a path under
                        the inbox starts with the inbox's name). -> {"mailbox", "folders":
                        {path: id}} (every folder, well-known ones by well-known name too).
                        A reset also forgets the mailbox's delta tokens and sent records; its
                        log, throttle and latency settings stay.
  GET  /admin/folders?mailbox=X                   the same folder map
  POST /admin/deliver   {"mailbox", "folder"?: "inbox" (well-known name or display-name path),
                        "mimes": [base64...], "received"?: ISO time, "is_read"?: false}
                        -> {"ids": [immutable ids]}; only the header is parsed
  GET  /admin/messages?mailbox=X&folder=F[&mime=0]
                        -> {"messages": [{"id" (immutable), "internetMessageId", "subject",
                        "size", "categories", "isRead", "receivedDateTime", "mime": base64}]}
                        in delivery order; F may be any well-known name, including
                        recoverableitemsdeletions and recoverableitemspurges; mime=0 leaves the
                        bodies out
  GET  /admin/sent?mailbox=X
                        -> {"sent": [{"mime": base64, "via": "sendMail"|"send", "saved": bool,
                        "at": unix time, "recipients": [...], "local": [mailboxes of this server
                        that got it], "smtp": {"state": "none"|"accepted"|"queued"|"refused"|
                        "failed", "accepted": [...], "refused": {address: "code text"},
                        "error"?: "..."}}]}
  POST /admin/policy    {"client_id", "mailboxes": [...] | null}: restrict the app to these
                        mailboxes; null lifts the restriction
  POST /admin/throttle  {"mailbox", "requests": n, "retry_after": s, "status": 429|503}
  POST /admin/latency   {"mailbox", "seconds"}: every request for the mailbox waits this long
                        while it holds its concurrency slot (so tests can reach the limit)
  POST /admin/expire-delta {"mailbox"}: forget every delta and skip token of the mailbox
  GET  /admin/log?mailbox=X
                        -> {"requests": [{"at", "method", "path", "query", "status",
                        "in_batch"}], "throttled": [{"at", "retry_after", "status", "reason":
                        "forced"|"concurrency", "in_batch"}]}: every /v1.0 request that names
                        the mailbox (path after /v1.0, percent-decoded, mailFolders('X') written
                        mailFolders/X, without the query; query percent-decoded; each batch
                        item is one entry with in_batch true). The outer $batch request
                        itself is logged under mailbox "*" with path "/$batch".
  POST /admin/reset-log {"mailbox"}: empty that mailbox's log
  GET  /health

Nothing secret is logged: the request log on stderr has method and path only.
"""

import argparse
import base64
import binascii
import bisect
import datetime
import email.header
import email.parser
import email.policy
import email.utils
import json
import re
import secrets
import smtplib
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GRAPH_AUDIENCE = "https://graph.microsoft.com"
BATCH_LIMIT = 20
CONCURRENCY_LIMIT = 4
DEFAULT_PAGE = 10
MAX_TOP = 1000
SMTP_RETRY_FOR = 600
SMTP_RETRY_EVERY = 2
LINK_SAFE = "$,()='@:"

ACCESS_DENIED = "Access is denied. Check credentials and try again."
RAOP_DENIED = ("Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly "
               "AccessPolicy settings.")
NOT_FOUND = "The specified object was not found in the store."
MIME_ONLY = "Only MIME content (Content-Type: text/plain, base64) is supported by this stand-in."

READ_ROLES = ("Mail.Read", "Mail.ReadWrite")
WRITE_ROLES = ("Mail.ReadWrite",)
SEND_ROLES = ("Mail.Send",)

# (well-known name, display name) of the folders under msgfolderroot, in listing order.
VISIBLE_FOLDERS = (("inbox", "Inbox"), ("drafts", "Drafts"), ("sentitems", "Sent Items"),
                   ("deleteditems", "Deleted Items"), ("archive", "Archive"),
                   ("junkemail", "Junk Email"))
HIDDEN_FOLDERS = (("recoverableitemsdeletions", "Deletions"),
                  ("recoverableitemspurges", "Purges"))

# The message properties $select knows (https://learn.microsoft.com/en-us/graph/api/resources/
# message#properties); the ones this server does not model come back null.
MESSAGE_PROPERTIES = (
    "bccRecipients", "body", "bodyPreview", "categories", "ccRecipients", "changeKey",
    "conversationId", "conversationIndex", "createdDateTime", "flag", "from", "hasAttachments",
    "id", "importance", "inferenceClassification", "internetMessageHeaders", "internetMessageId",
    "isDeliveryReceiptRequested", "isDraft", "isRead", "isReadReceiptRequested",
    "lastModifiedDateTime", "parentFolderId", "receivedDateTime", "replyTo", "sender",
    "sentDateTime", "subject", "toRecipients", "uniqueBody", "webLink")
PROPERTY_BY_LOWER = {p.lower(): p for p in MESSAGE_PROPERTIES}
# Not part of a full message unless selected (as in Graph, or not modelled here).
NOT_BY_DEFAULT = {"internetMessageHeaders", "body", "uniqueBody", "bodyPreview",
                  "conversationIndex"}

# Extended property types (https://learn.microsoft.com/en-us/graph/api/resources/
# extended-properties-overview), lower-case -> the spelling Graph answers with.
PROPERTY_TYPES = {t.lower(): t for t in (
    "ApplicationTime", "Binary", "Boolean", "CLSID", "Currency", "Double", "Float", "Integer",
    "Long", "Short", "SystemTime", "String", "Object")}
MESSAGE_SIZE = ("integer", 0x0E08)  # PidTagMessageSize
DELETE_AFTER_SUBMIT = ("boolean", 0x0E01)  # PidTagDeleteAfterSubmit, [MS-OXOMSG]


def now_iso(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    """An ISO 8601 time (Z or an offset; naive means UTC) -> unix time, or None."""
    try:
        t = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.timestamp()


def clean(text):
    """Text safe for JSON: header text can carry undecodable bytes as lone surrogates."""
    if text is None:
        return None
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def random_id(prefix, nbytes, suffix=""):
    return prefix + secrets.token_urlsafe(nbytes) + suffix


class GraphError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def not_found():
    return GraphError(404, "ErrorItemNotFound", NOT_FOUND)


def bad_request(message, code="BadRequest"):
    return GraphError(400, code, message)


class Reply:
    """A response: JSON (body), raw bytes (raw + content_type) or nothing."""

    def __init__(self, status, body=None, raw=None, content_type=None, headers=None):
        self.status, self.body, self.raw = status, body, raw
        self.content_type = content_type
        self.headers = dict(headers or {})
        self.after = None  # run once the state lock is released (SMTP)


# ---------------------------------------------------------------------------- the store

class Folder:
    def __init__(self, name, parent, wellknown=None, hidden=False):
        self.id = random_id("AAMkAGI2", 30, "AAA=")
        self.name, self.parent, self.wellknown, self.hidden = name, parent, wellknown, hidden
        self.children = []  # folder ids
        self.messages = {}  # immutable id -> Message, in arrival order
        self.events = []  # (seq, immutable id, kind "in"|"out"|"chg", stay)
        self.seqs = []  # the events' seqs, for bisect


class Message:
    def __init__(self, iid, mime, received, stay):
        self.iid, self.mime, self.received, self.stay = iid, mime, received, stay
        self.created = received
        self.modified = received
        self.folder = None
        self.is_read = False
        self.is_draft = False
        self.categories = []
        self.props = {}  # (type, tag or name) -> (id as given, value)
        self.version = 1
        h = parse_header(mime)
        self.subject, self.message_id = h["subject"], h["message_id"]
        self.sender, self.to, self.cc, self.bcc = h["from"], h["to"], h["cc"], h["bcc"]
        self.reply_to, self.sent = h["reply_to"], h["date"] or received

    def recipients(self):
        seen, out = set(), []
        for _, addr in self.to + self.cc + self.bcc:
            if addr and addr.lower() not in seen:
                seen.add(addr.lower())
                out.append(addr)
        return out


HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.default)


def parse_header(mime):
    """Subject, Message-ID, addresses and Date of a MIME message; None or [] for whatever does
    not parse (a mail that does not parse still lists). The header is read by the email package
    with policy default; Subject is decoded by that policy, the address fields, Date and
    Message-ID are taken from the raw header lines (its header objects cost ten times more, and
    10,000 mails are delivered at once)."""
    out = {"subject": None, "message_id": None, "from": None, "to": [], "cc": [], "bcc": [],
           "reply_to": [], "date": None}
    try:
        msg = HEADER_PARSER.parsebytes(mime)
        raw = {}
        for name, value in msg.raw_items():
            raw.setdefault(name.lower(), []).append(re.sub(r"\r?\n[ \t]", " ", str(value)))
    except Exception:  # noqa: BLE001 - garbage in, a message without header fields out
        return out
    if "subject" in raw:
        try:
            out["subject"] = clean(str(msg["subject"])).strip()
        except Exception:  # noqa: BLE001
            out["subject"] = clean(raw["subject"][0]).strip()

    def addresses(name):
        try:
            pairs = email.utils.getaddresses([clean(v) for v in raw.get(name, [])])
        except Exception:  # noqa: BLE001
            return []
        return [(decode_words(n), clean(a)) for n, a in pairs if a and "@" in a]

    if "message-id" in raw:
        out["message_id"] = clean(raw["message-id"][0]).strip() or None
    senders = addresses("from")
    out["from"] = senders[0] if senders else None
    for key, name in (("to", "to"), ("cc", "cc"), ("bcc", "bcc"), ("reply_to", "reply-to")):
        out[key] = addresses(name)
    if "date" in raw:
        try:
            out["date"] = email.utils.parsedate_to_datetime(raw["date"][0].strip()).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return out


def decode_words(text):
    """A display name with its RFC 2047 encoded words decoded."""
    if not text or "=?" not in text:
        return clean(text)
    try:
        return clean(str(email.header.make_header(email.header.decode_header(text))))
    except Exception:  # noqa: BLE001
        return clean(text)


class Mailbox:
    def __init__(self, address, inbox_name="Inbox"):
        self.address = address
        self.folders = {}  # id -> Folder
        self.wellknown = {}  # well-known name -> Folder
        self.messages = {}  # immutable id -> Message
        self.seq = 0
        self.stay = 0
        self.skip_tokens = {}  # token -> (delta round in progress, position of its next page)
        self.delta_tokens = {}  # token -> state at the end of a round
        root = self._add(Folder("Top of Information Store", None, "msgfolderroot", hidden=True))
        for name, display in VISIBLE_FOLDERS:
            self._add(Folder(inbox_name if name == "inbox" else display, root, name))
        for name, display in HIDDEN_FOLDERS:
            self._add(Folder(display, None, name, hidden=True))

    def _add(self, folder):
        self.folders[folder.id] = folder
        if folder.wellknown:
            self.wellknown[folder.wellknown] = folder
        if folder.parent is not None:
            folder.parent.children.append(folder.id)
        return folder

    @property
    def root(self):
        return self.wellknown["msgfolderroot"]

    def child(self, parent, name):
        for fid in parent.children:
            if self.folders[fid].name.lower() == name.lower():
                return self.folders[fid]
        return None

    def make_path(self, path):
        parent = self.root
        for name in [p for p in path.split("/") if p]:
            found = self.child(parent, name)
            parent = found if found is not None else self._add(Folder(name, parent))
        return parent

    def by_path(self, path):
        """A folder by well-known name or display-name path from msgfolderroot, or None."""
        folder = self.wellknown.get(path.lower())
        if folder is not None:
            return folder
        parent = self.root
        for name in [p for p in path.split("/") if p]:
            parent = self.child(parent, name)
            if parent is None:
                return None
        return None if parent is self.root else parent

    def path_of(self, folder):
        parts = []
        while folder is not None and folder is not self.root:
            parts.append(folder.name)
            folder = folder.parent
        return "/".join(reversed(parts))

    def folder_map(self):
        out = {}
        for folder in self.folders.values():
            if folder.wellknown:
                out[folder.wellknown] = folder.id
            if folder.parent is not None:
                out[self.path_of(folder)] = folder.id
        return out

    def resolve_folder(self, ref):
        folder = self.wellknown.get(ref.lower()) or self.folders.get(ref)
        if folder is None:
            raise not_found()
        return folder

    # -- ids
    def regular_id(self, msg):
        raw = f"{msg.iid}:{msg.stay}".encode()
        return "AAMkA" + base64.urlsafe_b64encode(raw).decode()

    def resolve_message(self, ref):
        """A message by immutable or (still valid) regular id."""
        msg = self.messages.get(ref)
        if msg is not None:
            return msg
        if ref.startswith("AAMkA"):
            try:
                raw = base64.urlsafe_b64decode(ref[5:] + "=" * (-len(ref[5:]) % 4)).decode()
                iid, _, stay = raw.rpartition(":")
                msg = self.messages.get(iid)
                if msg is not None and str(msg.stay) == stay:
                    return msg
            except (binascii.Error, ValueError, UnicodeDecodeError):
                pass
        raise not_found()

    # -- changes
    def _event(self, folder, msg, kind, stay=None):
        self.seq += 1
        folder.events.append((self.seq, msg.iid, kind, msg.stay if stay is None else stay))
        folder.seqs.append(self.seq)

    def _touch(self, msg):
        msg.version += 1
        msg.modified = time.time()

    def put(self, folder, msg):
        self.stay += 1
        msg.stay = self.stay
        msg.folder = folder
        folder.messages[msg.iid] = msg
        self.messages[msg.iid] = msg
        self._event(folder, msg, "in")

    def deliver(self, folder, mime, received=None, is_read=False):
        received = time.time() if received is None else received
        msg = Message(random_id("AAkALg", 28, "="), mime, received, 0)
        msg.is_read = is_read
        self.put(folder, msg)
        return msg

    def move(self, msg, dest):
        if dest is msg.folder:
            return
        old = msg.folder
        del old.messages[msg.iid]
        self._event(old, msg, "out")
        self._touch(msg)
        self.put(dest, msg)

    def remove(self, msg):
        del msg.folder.messages[msg.iid]
        self._event(msg.folder, msg, "out")
        del self.messages[msg.iid]
        msg.folder = None

    def changed(self, msg):
        self._touch(msg)
        self._event(msg.folder, msg, "chg")


# ---------------------------------------------------------------------------- the server

def etag(msg):
    key = base64.b64encode(f"{msg.iid}:{msg.version}".encode()).decode()[-28:]
    return key


def property_key(prop_id):
    """(type, tag) for "Integer 0x0E08", (type, name) for a named property, lower-cased type."""
    kind, _, rest = prop_id.strip().partition(" ")
    kind = kind.lower()
    if kind not in PROPERTY_TYPES:
        raise bad_request(f"Invalid extended property id '{prop_id}'.",
                          "ErrorInvalidExtendedPropertyValue")
    rest = rest.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]{1,4}", rest):
        return kind, int(rest, 16)
    if not rest:
        raise bad_request(f"Invalid extended property id '{prop_id}'.",
                          "ErrorInvalidExtendedPropertyValue")
    return kind, rest


def property_id(key, given):
    kind, tag = key
    if isinstance(tag, int):
        return f"{PROPERTY_TYPES[kind]} 0x{tag:x}"
    return given


def expand_ids(query):
    """The extended property ids named by $expand=singleValueExtendedProperties($filter=...)."""
    expand = query.get("$expand")
    if not expand:
        return None
    m = re.fullmatch(r"\s*singleValueExtendedProperties\s*\(\s*\$filter\s*=\s*(.*)\)\s*",
                     expand, re.I | re.S)
    if not m:
        raise bad_request(f"Parsing OData Select and Expand failed: '{expand}' cannot be expanded "
                          "by this stand-in.", "BadRequest")
    ids = []
    for part in re.split(r"\s+or\s+", m.group(1).strip(), flags=re.I):
        pm = re.fullmatch(r"id\s+eq\s+'((?:[^']|'')*)'", part.strip(), re.I)
        if not pm:
            raise bad_request(f"Unsupported extended property filter '{part}'.", "BadRequest")
        given = pm.group(1).replace("''", "'")
        ids.append((property_key(given), given))
    return ids


def select_set(query):
    raw = query.get("$select")
    if not raw:
        return None
    out = set()
    for name in raw.split(","):
        name = name.strip()
        if not name:
            continue
        known = PROPERTY_BY_LOWER.get(name.lower())
        if known is None:
            raise bad_request(f"Could not find a property named '{name}' on type "
                              "'microsoft.graph.message'.", "RequestBroker--ParseUri")
        out.add(known)
    return out


def address_json(pair):
    if pair is None:
        return None
    name, addr = pair
    return {"emailAddress": {"name": name or addr, "address": addr}}


class Call:
    """One request to /v1.0 (or one item of a batch)."""

    def __init__(self, method, target, headers, body, host, in_batch=False):
        self.method = method.upper()
        path, _, query = target.partition("?")
        self.raw_path = path
        self.query_string = query
        self.query = {}
        for key, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
            self.query[key.lower()] = values[0]
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body
        self.host = host
        self.in_batch = in_batch
        self.prefer = parse_prefer(self.headers.get("prefer", ""))
        self.segments = split_path(path)
        self.request_id = str(uuid.uuid4())
        self.client_request_id = self.headers.get("client-request-id") or str(uuid.uuid4())

    @property
    def immutable(self):
        return self.prefer.get("idtype", "").lower() == "immutableid"

    def page_size(self, default=DEFAULT_PAGE):
        size = None
        top = self.query.get("$top")
        if top is not None:
            try:
                size = int(top)
            except ValueError:
                raise bad_request(f"Invalid $top value '{top}'.", "ErrorInvalidParameter") from None
            if size < 1:
                raise bad_request(f"Invalid $top value '{top}'.", "ErrorInvalidParameter")
        applied = None
        maxpage = self.prefer.get("odata.maxpagesize")
        if maxpage is not None:
            try:
                m = int(maxpage)
                if m >= 1:
                    applied = m
                    size = m if size is None else min(size, m)
            except ValueError:
                pass
        return min(size if size is not None else default, MAX_TOP), applied


def parse_prefer(value):
    prefs = {}
    for part in value.split(","):
        name, sep, val = part.strip().partition("=")
        if name:
            prefs[name.strip().lower()] = val.strip().strip('"') if sep else ""
    return prefs


def split_path(path):
    """/users/a%40b/mailFolders('X')/messages -> ["users", "a@b", "mailFolders", "X", "messages"]"""
    out = []
    for raw in path.split("/"):
        if not raw:
            continue
        seg = urllib.parse.unquote(raw)
        m = re.fullmatch(r"([A-Za-z]+)\('(.*)'\)", seg)
        if m:
            out.extend([m.group(1), m.group(2).replace("''", "'")])
        else:
            out.append(seg)
    return out


class GraphServer:
    def __init__(self, token_url, smtp_port):
        self.token_url = token_url.rstrip("/")
        self.smtp_port = smtp_port
        self.lock = threading.RLock()
        self.mailboxes = {}  # lower-case address -> Mailbox
        self.policies = {}  # client_id -> set of lower-case addresses
        self.throttles = {}  # mailbox -> {"remaining", "retry_after", "status"}
        self.latency = {}  # mailbox -> seconds
        self.logs = {}  # mailbox (or "*") -> {"requests": [], "throttled": []}
        self.sent = {}  # mailbox -> [records]
        self.inflight = {}  # (client_id, mailbox) -> count
        self.token_cache = {}  # token -> (introspection answer, exp)
        self.token_lock = threading.Lock()
        self.outbox = []  # SMTP jobs waiting for a retry
        self.outbox_cv = threading.Condition()
        threading.Thread(target=self._smtp_worker, daemon=True).start()

    # -- logs
    def _log(self, mailbox):
        return self.logs.setdefault(mailbox, {"requests": [], "throttled": []})

    def _record_throttle(self, mailbox, status, retry_after, reason, in_batch):
        with self.lock:
            self._log(mailbox)["throttled"].append(
                {"at": time.time(), "retry_after": retry_after, "status": status,
                 "reason": reason, "in_batch": in_batch})

    # -- authentication
    def authenticate(self, call):
        auth = call.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.",
                             {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'})
        now = time.time()
        with self.token_lock:
            cached = self.token_cache.get(token)
            if cached is not None and cached[1] > now:
                info = cached[0]
            else:
                self.token_cache.pop(token, None)
                info = None
        if info is None:
            info = self._introspect(token)
            if not info.get("active"):
                raise GraphError(401, "InvalidAuthenticationToken",
                                 "Access token has expired or is not yet valid.",
                                 {"WWW-Authenticate": 'Bearer realm="", error="invalid_token", '
                                  'error_description="The access token is expired or invalid"'})
            with self.token_lock:
                self.token_cache[token] = (info, float(info.get("exp") or 0))
        if info.get("aud") != GRAPH_AUDIENCE:
            raise GraphError(401, "InvalidAuthenticationToken", "Invalid audience.",
                             {"WWW-Authenticate": 'Bearer realm="", error="invalid_token", '
                              'error_description="The audience is invalid"'})
        return info

    def _introspect(self, token):
        data = urllib.parse.urlencode({"token": token}).encode()
        try:
            with urllib.request.urlopen(self.token_url + "/introspect", data=data,
                                        timeout=5) as resp:
                return json.loads(resp.read() or b"{}")
        except (OSError, ValueError) as e:
            # guess: Graph cannot be without its token service; answer like a passing outage.
            raise GraphError(503, "serviceNotAvailable",
                             f"The token service could not be asked: {type(e).__name__}.",
                             {"Retry-After": "1"}) from None

    # -- one request
    def execute(self, call):
        mailbox = None
        if len(call.segments) >= 2 and call.segments[0].lower() == "users":
            mailbox = call.segments[1].lower()
        try:
            reply = self._execute(call, mailbox)
        except GraphError as e:
            reply = error_reply(e, call)
        if reply.after is not None:
            reply.after()
            reply.after = None
        logged = mailbox or ("*" if call.segments[:1] == ["$batch"] else None)
        if logged is not None:
            with self.lock:
                path = "/" + "/".join(call.segments)
                self._log(logged)["requests"].append(
                    {"at": time.time(), "method": call.method, "path": path,
                     "query": urllib.parse.unquote_plus(call.query_string),
                     "status": reply.status, "in_batch": call.in_batch})
        return reply

    def _execute(self, call, mailbox):
        info = self.authenticate(call)
        segs = call.segments
        if not segs:
            raise bad_request("Invalid request: no resource named.")
        head = segs[0].lower()
        if head == "$batch":
            if call.in_batch:
                raise bad_request("A batch request cannot be nested in a batch.")
            if call.method != "POST":
                raise GraphError(405, "BadRequest", "The $batch endpoint takes POST only.")
            return self.batch(call, info)
        if head == "me":
            raise bad_request("/me request is only valid with delegated authentication flow.")
        if head != "users" or mailbox is None:
            raise bad_request(f"Resource not found for the segment '{segs[0]}'.")
        handler, need = self.route(call.method, segs[2:])
        self._forced_throttle(mailbox, call.in_batch)
        roles = info.get("roles") or []
        if not any(r in roles for r in need):
            raise GraphError(403, "ErrorAccessDenied", ACCESS_DENIED)
        client = info.get("client_id") or ""
        key = (client, mailbox)
        with self.lock:
            if self.inflight.get(key, 0) >= CONCURRENCY_LIMIT:
                busy = True
            else:
                busy = False
                self.inflight[key] = self.inflight.get(key, 0) + 1
        if busy:
            self._record_throttle(mailbox, 429, 1, "concurrency", call.in_batch)
            raise GraphError(429, "ApplicationThrottled",
                             "Application is over its MailboxConcurrency limit.",
                             {"Retry-After": "1"})
        try:
            delay = self.latency.get(mailbox)
            if delay:
                time.sleep(delay)
            with self.lock:
                mbox = self.mailboxes.get(mailbox)
                if mbox is None:
                    raise GraphError(404, "ErrorInvalidUser",
                                     f"The requested user '{call.segments[1]}' is invalid.")
                allowed = self.policies.get(client)
                if allowed is not None and mailbox not in allowed:
                    raise GraphError(403, "ErrorAccessDenied", RAOP_DENIED)
                return handler(call, mbox)
        finally:
            with self.lock:
                self.inflight[key] -= 1
                if not self.inflight[key]:
                    del self.inflight[key]

    def _forced_throttle(self, mailbox, in_batch):
        with self.lock:
            t = self.throttles.get(mailbox)
            if not t or t["remaining"] <= 0:
                return
            t["remaining"] -= 1
            status, retry_after = t["status"], t["retry_after"]
        self._record_throttle(mailbox, status, retry_after, "forced", in_batch)
        if status == 503:
            raise GraphError(503, "serviceNotAvailable",
                             "The service is temporarily unavailable. Retry later.",
                             {"Retry-After": str(retry_after)})
        raise GraphError(status, "ApplicationThrottled",
                         "Application is over its MailboxConcurrency limit.",
                         {"Retry-After": str(retry_after)})

    def route(self, method, rest):
        """(handler, roles needed) for the path after /users/{u}."""
        low = [s.lower() for s in rest]
        # Actions and functions may be spelt with their namespace.
        low = [s[len("microsoft.graph."):] if s.startswith("microsoft.graph.") else s for s in low]
        n = len(low)

        def need(m, handler, roles):
            if method != m:
                raise GraphError(405, "ErrorInvalidRequest",
                                 f"The OData request is not supported: {method} on this resource.")
            return handler, roles

        if n == 1 and low[0] == "sendmail":
            return need("POST", self.send_mail, SEND_ROLES)
        if n >= 1 and low[0] == "mailfolders":
            if n == 1:
                return need("GET", lambda c, m: self.list_folders(c, m, m.root), READ_ROLES)
            folder_ref = rest[1]
            if n == 2:
                return need("GET", lambda c, m: self.get_folder(c, m, folder_ref), READ_ROLES)
            if n == 3 and low[2] == "childfolders":
                return need("GET", lambda c, m: self.list_folders(
                    c, m, m.resolve_folder(folder_ref)), READ_ROLES)
            if n >= 3 and low[2] == "messages":
                if n == 3:
                    return need("GET", lambda c, m: self.list_messages(
                        c, m, m.resolve_folder(folder_ref)), READ_ROLES)
                if n == 4 and low[3] == "delta":
                    return need("GET", lambda c, m: self.delta(c, m, folder_ref), READ_ROLES)
                return self.message_route(method, rest[3:], low[3:], folder_ref)
        if n >= 1 and low[0] == "messages":
            if n == 1:
                if method == "POST":
                    return self.create_draft, WRITE_ROLES
                return need("GET", lambda c, m: self.list_messages(c, m, None), READ_ROLES)
            return self.message_route(method, rest[1:], low[1:], None)
        name = rest[0] if rest else ""
        raise bad_request(f"Resource not found for the segment '{name}'.")

    def message_route(self, method, rest, low, folder_ref):
        msg_ref = rest[0]

        def find(mbox):
            msg = mbox.resolve_message(msg_ref)
            if folder_ref is not None and mbox.resolve_folder(folder_ref) is not msg.folder:
                raise not_found()
            return msg

        def need(m, handler, roles):
            if method != m:
                raise GraphError(405, "ErrorInvalidRequest",
                                 f"The OData request is not supported: {method} on this resource.")
            return (lambda c, mbox: handler(c, mbox, find(mbox))), roles

        if len(low) == 1:
            if method == "GET":
                return need("GET", self.get_message, READ_ROLES)
            if method == "PATCH":
                return need("PATCH", self.patch_message, WRITE_ROLES)
            if method == "DELETE":
                return need("DELETE", self.delete_message, WRITE_ROLES)
            return need("GET", self.get_message, READ_ROLES)
        if len(low) == 2:
            action = low[1]
            if action == "$value":
                return need("GET", self.get_mime, READ_ROLES)
            if action == "move":
                return need("POST", self.move_message, WRITE_ROLES)
            if action == "permanentdelete":
                return need("POST", self.purge_message, WRITE_ROLES)
            if action == "send":
                return need("POST", self.send_draft, SEND_ROLES)
        raise bad_request(f"Resource not found for the segment '{rest[-1]}'.")

    # -- links
    def link(self, call, path, params):
        query = "&".join(f"{k}={urllib.parse.quote(str(v), safe=LINK_SAFE)}"
                         for k, v in params.items())
        return f"https://{call.host}/v1.0{path}" + (f"?{query}" if query else "")

    def next_link(self, call, skip):
        params = {}
        for key, values in urllib.parse.parse_qs(call.query_string, keep_blank_values=True).items():
            if key.lower() != "$skip":
                params[key] = values[0]
        params["$skip"] = skip
        return self.link(call, call.raw_path, params)

    # -- folders
    def folder_json(self, mbox, folder):
        visible = [m for m in folder.messages.values()]
        return {"id": folder.id, "displayName": folder.name,
                "parentFolderId": folder.parent.id if folder.parent is not None else None,
                "childFolderCount": len(folder.children),
                "unreadItemCount": sum(1 for m in visible if not m.is_read),
                "totalItemCount": len(visible),
                "sizeInBytes": sum(len(m.mime) for m in visible),
                "isHidden": folder.hidden}

    def list_folders(self, call, mbox, parent):
        folders = [mbox.folders[fid] for fid in parent.children]
        flt = call.query.get("$filter")
        if flt:
            m = re.fullmatch(r"\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*", flt, re.I)
            if not m:
                raise bad_request("The query filter contains one or more invalid nodes.",
                                  "ErrorInvalidUrlQueryFilter")
            want = m.group(1).replace("''", "'").lower()
            folders = [f for f in folders if f.name.lower() == want]
        size, applied = call.page_size()
        skip = self._skip(call)
        page = folders[skip:skip + size]
        body = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('"
                                  f"{mbox.address}')/mailFolders",
                "value": [self.folder_json(mbox, f) for f in page]}
        if skip + size < len(folders):
            body["@odata.nextLink"] = self.next_link(call, skip + size)
        return Reply(200, body, headers=self._applied(applied))

    def get_folder(self, call, mbox, ref):
        folder = mbox.resolve_folder(ref)
        return Reply(200, self.folder_json(mbox, folder))

    @staticmethod
    def _skip(call):
        try:
            skip = int(call.query.get("$skip", "0") or 0)
        except ValueError:
            raise bad_request("Invalid $skip value.", "ErrorInvalidParameter") from None
        return max(skip, 0)

    @staticmethod
    def _applied(applied):
        return {"Preference-Applied": f"odata.maxpagesize={applied}"} if applied else {}

    # -- messages
    def message_json(self, mbox, msg, immutable, select=None, expand=None, odata_type=False):
        mid = msg.iid if immutable else mbox.regular_id(msg)
        key = etag(msg)
        out = {}
        if odata_type:
            out["@odata.type"] = "#microsoft.graph.message"
        out["@odata.etag"] = f'W/"{key}"'
        out["id"] = mid
        wanted = [p for p in MESSAGE_PROPERTIES
                  if (p in select if select is not None else p not in NOT_BY_DEFAULT)]
        for prop in wanted:
            if prop == "id":
                continue
            out[prop] = self._property(mbox, msg, prop, key)
        if expand is not None:
            values = []
            for pkey, given in expand:
                if pkey == MESSAGE_SIZE:
                    values.append({"id": property_id(pkey, given), "value": str(len(msg.mime))})
                elif pkey in msg.props:
                    values.append({"id": property_id(pkey, given), "value": msg.props[pkey][1]})
            if values:
                out["singleValueExtendedProperties"] = values
        return out

    def _property(self, mbox, msg, prop, key):
        if prop == "subject":
            return msg.subject
        if prop == "receivedDateTime":
            return now_iso(msg.received)
        if prop == "sentDateTime":
            return now_iso(msg.sent)
        if prop == "createdDateTime":
            return now_iso(msg.created)
        if prop == "lastModifiedDateTime":
            return now_iso(msg.modified)
        if prop == "internetMessageId":
            return msg.message_id
        if prop in ("from", "sender"):
            return address_json(msg.sender)
        if prop == "toRecipients":
            return [address_json(a) for a in msg.to]
        if prop == "ccRecipients":
            return [address_json(a) for a in msg.cc]
        if prop == "bccRecipients":
            return [address_json(a) for a in msg.bcc]
        if prop == "replyTo":
            return [address_json(a) for a in msg.reply_to]
        if prop == "isRead":
            return msg.is_read
        if prop == "isDraft":
            return msg.is_draft
        if prop == "categories":
            return list(msg.categories)
        if prop == "hasAttachments":
            return False
        if prop == "parentFolderId":
            return msg.folder.id if msg.folder is not None else None
        if prop == "changeKey":
            return key
        if prop == "importance":
            return "normal"
        if prop == "inferenceClassification":
            return "focused"
        if prop == "flag":
            return {"flagStatus": "notFlagged"}
        if prop in ("isDeliveryReceiptRequested", "isReadReceiptRequested"):
            return False
        if prop == "internetMessageHeaders":
            return internet_headers(msg.mime)
        return None

    def _ordered(self, call, messages):
        order = (call.query.get("$orderby") or "receivedDateTime desc").strip()
        m = re.fullmatch(r"receivedDateTime(\s+(asc|desc))?", order, re.I)
        if not m:
            raise bad_request(f"The $orderby '{order}' is not supported by this stand-in.",
                              "ErrorInvalidProperty")
        desc = (m.group(2) or "asc").lower() == "desc"
        indexed = list(enumerate(messages))
        indexed.sort(key=lambda p: (p[1].received, p[0]), reverse=desc)
        return [p[1] for p in indexed]

    def _filtered(self, call, messages):
        flt = call.query.get("$filter")
        if not flt:
            return messages
        tests = []
        for part in re.split(r"\s+and\s+", flt.strip(), flags=re.I):
            part = part.strip()
            m = re.fullmatch(r"receivedDateTime\s+(ge|gt|le|lt|eq)\s+'?([0-9T:.\-+Z]+)'?",
                             part, re.I)
            if m:
                op, t = m.group(1).lower(), parse_time(m.group(2))
                if t is None:
                    raise bad_request(f"Invalid time in $filter: '{m.group(2)}'.",
                                      "ErrorInvalidUrlQueryFilter")
                ops = {"ge": lambda a, b: a >= b, "gt": lambda a, b: a > b,
                       "le": lambda a, b: a <= b, "lt": lambda a, b: a < b,
                       "eq": lambda a, b: a == b}
                fn = ops[op]
                tests.append(lambda msg, fn=fn, t=t: fn(int(msg.received), int(t)))
                continue
            m = re.fullmatch(r"isRead\s+eq\s+(true|false)", part, re.I)
            if m:
                want = m.group(1).lower() == "true"
                tests.append(lambda msg, want=want: msg.is_read == want)
                continue
            m = re.fullmatch(r"internetMessageId\s+eq\s+'((?:[^']|'')*)'", part, re.I)
            if m:
                want = m.group(1).replace("''", "'")
                tests.append(lambda msg, want=want: msg.message_id == want)
                continue
            raise bad_request("The query filter contains one or more invalid nodes.",
                              "ErrorInvalidUrlQueryFilter")
        return [msg for msg in messages if all(t(msg) for t in tests)]

    def list_messages(self, call, mbox, folder):
        select, expand = select_set(call.query), expand_ids(call.query)
        if folder is None:
            messages = [m for m in mbox.messages.values()
                        if m.folder is not None and not in_hidden(mbox, m.folder)]
        else:
            messages = list(folder.messages.values())
        messages = self._ordered(call, self._filtered(call, messages))
        size, applied = call.page_size()
        skip = self._skip(call)
        page = messages[skip:skip + size]
        body = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('"
                                  f"{mbox.address}')/messages",
                "value": [self.message_json(mbox, m, call.immutable, select, expand)
                          for m in page]}
        if skip + size < len(messages):
            body["@odata.nextLink"] = self.next_link(call, skip + size)
        return Reply(200, body, headers=self._applied(applied))

    def get_message(self, call, mbox, msg):
        return Reply(200, self.message_json(mbox, msg, call.immutable, select_set(call.query),
                                            expand_ids(call.query)))

    def get_mime(self, call, mbox, msg):
        return Reply(200, raw=msg.mime, content_type="text/plain")

    def patch_message(self, call, mbox, msg):
        body = json_body(call)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.", "ErrorInvalidRequest")
        if "isRead" in body:
            if not isinstance(body["isRead"], bool):
                raise bad_request("isRead must be true or false.", "ErrorInvalidProperty")
            msg.is_read = body["isRead"]
        if "categories" in body:
            cats = body["categories"]
            if not (isinstance(cats, list) and all(isinstance(c, str) for c in cats)):
                raise bad_request("categories must be a list of strings.", "ErrorInvalidProperty")
            msg.categories = list(cats)
        props = body.get("singleValueExtendedProperties")
        if props is not None:
            if not isinstance(props, list):
                raise bad_request("singleValueExtendedProperties must be a list.",
                                  "ErrorInvalidProperty")
            for p in props:
                if not (isinstance(p, dict) and isinstance(p.get("id"), str)
                        and isinstance(p.get("value"), str)):
                    raise bad_request("An extended property needs a string id and value.",
                                      "ErrorInvalidExtendedPropertyValue")
                msg.props[property_key(p["id"])] = (p["id"], p["value"])
        mbox.changed(msg)
        return Reply(200, self.message_json(mbox, msg, call.immutable))

    def move_message(self, call, mbox, msg):
        body = json_body(call)
        dest_ref = body.get("destinationId") if isinstance(body, dict) else None
        if not isinstance(dest_ref, str) or not dest_ref:
            raise bad_request("The destinationId parameter is missing.", "ErrorInvalidParameter")
        dest = mbox.resolve_folder(dest_ref)
        mbox.move(msg, dest)
        return Reply(201, self.message_json(mbox, msg, call.immutable))

    def delete_message(self, call, mbox, msg):
        mbox.move(msg, mbox.wellknown["recoverableitemsdeletions"])
        return Reply(204)

    def purge_message(self, call, mbox, msg):
        mbox.move(msg, mbox.wellknown["recoverableitemspurges"])
        return Reply(204)

    # -- delta
    def delta(self, call, mbox, folder_ref):
        skiptoken = call.query.get("$skiptoken")
        deltatoken = call.query.get("$deltatoken")
        folder = mbox.resolve_folder(folder_ref)
        gone = GraphError(410, "syncStateNotFound",
                          "The sync state generation is not found. The delta token is expired "
                          "and data must be synchronized again.")
        if skiptoken is not None:
            page = mbox.skip_tokens.get(skiptoken)
            if page is None or page[0]["folder"] is not folder:
                raise gone
            state, pos = page
        else:
            if deltatoken is not None:
                base = mbox.delta_tokens.get(deltatoken)
                if base is None or base["folder"] is not folder:
                    raise gone
                query = dict(base["query"])
            else:
                base = None
                query = {k: v for k, v in call.query.items()
                         if k in ("$select", "$expand", "$orderby", "$filter", "$top",
                                  "changetype")}
                select_set(query)  # a bad $select or $expand fails now, not on a later page
                expand_ids(query)
            state, pos = self._delta_round(call, mbox, folder, base, query), 0
        size, applied = call.page_size()
        if "$top" in state["query"] and "$top" not in call.query:
            size = min(size, int(state["query"]["$top"]))
        select, expand = select_set(state["query"]), expand_ids(state["query"])
        value = []
        items = state["items"]
        while pos < len(items) and len(value) < size:
            kind, iid, stay = items[pos]
            pos += 1
            msg = mbox.messages.get(iid)
            if kind == "obj":
                if msg is not None and msg.folder is folder:
                    value.append(self.message_json(mbox, msg, call.immutable, select, expand,
                                                   odata_type=True))
            else:
                gone_id = iid if call.immutable else mbox.regular_id(_Stay(iid, stay))
                value.append({"@odata.type": "#microsoft.graph.message", "id": gone_id,
                              "@removed": {"reason": "deleted"}})
        path = f"/users/{urllib.parse.quote(mbox.address)}/mailFolders/{folder.id}/messages/delta"
        body = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
                "value": value}
        if pos < len(items):
            token = secrets.token_urlsafe(24)
            mbox.skip_tokens[token] = (state, pos)
            body["@odata.nextLink"] = self.link(call, path, {"$skiptoken": token})
        else:
            token = secrets.token_urlsafe(24)
            mbox.delta_tokens[token] = {"folder": folder, "seq": state["end_seq"],
                                        "query": state["query"]}
            body["@odata.deltaLink"] = self.link(call, path, {"$deltatoken": token})
        return Reply(200, body, headers=self._applied(applied))

    def _delta_round(self, call, mbox, folder, base, query):
        """The items of a round: ("obj", iid, stay) or ("rm", iid, stay the client knew)."""
        end_seq = mbox.seq
        sub = Call("GET", "/?" + urllib.parse.urlencode(
            {k: v for k, v in query.items() if k in ("$orderby", "$filter")}), {}, b"", call.host)
        if base is None:
            messages = list(folder.messages.values())
            messages = self._filtered(sub, messages)
            if sub.query.get("$orderby"):
                messages = self._ordered(sub, messages)
            items = [("obj", m.iid, m.stay) for m in messages]
        else:
            change_type = (query.get("changetype") or "").lower()
            start = bisect.bisect_right(folder.seqs, base["seq"])
            first, last = {}, {}
            for seq, iid, kind, stay in folder.events[start:]:
                if iid not in first:
                    first[iid] = (kind, stay)
                last[iid] = seq
            items = []
            for iid in sorted(last, key=last.get):
                msg = mbox.messages.get(iid)
                was_there = first[iid][0] != "in"
                if msg is not None and msg.folder is folder:
                    if change_type == "created" and was_there:
                        continue
                    if change_type == "updated" and not was_there:
                        continue
                    if change_type == "deleted":
                        continue
                    if sub.query.get("$filter") and not self._filtered(sub, [msg]):
                        continue
                    items.append(("obj", iid, msg.stay))
                elif was_there and change_type in ("", "deleted"):
                    items.append(("rm", iid, first[iid][1]))
        return {"folder": folder, "items": items, "end_seq": end_seq, "query": query}

    # -- sending
    def _mime_body(self, call):
        ctype = call.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            raise bad_request(MIME_ONLY, "ErrorNotSupported")
        text = re.sub(rb"\s+", b"", call.body or b"")
        try:
            mime = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            mime = b""
        if not mime:
            raise bad_request("Invalid base64 string for MIME content.",
                              "ErrorMimeContentInvalidBase64String")
        return mime

    def send_mail(self, call, mbox):
        mime = self._mime_body(call)
        copy = mbox.deliver(mbox.wellknown["sentitems"], mime, is_read=True)
        return self._submit(mbox, copy, "sendMail", saved=True, reply=Reply(202))

    def create_draft(self, call, mbox):
        mime = self._mime_body(call)
        msg = mbox.deliver(mbox.wellknown["drafts"], mime, is_read=True)
        msg.is_draft = True
        return Reply(201, self.message_json(mbox, msg, call.immutable))

    def send_draft(self, call, mbox, msg):
        if not msg.is_draft:
            raise bad_request("Only a draft can be sent.", "ErrorInvalidOperation")
        delete = msg.props.get(DELETE_AFTER_SUBMIT, ("", ""))[1].strip().lower() == "true"
        msg.is_draft = False
        msg.sent = time.time()
        if delete:
            mbox.remove(msg)
        else:
            mbox.move(msg, mbox.wellknown["sentitems"])
        return self._submit(mbox, msg, "send", saved=not delete, reply=Reply(202))

    def _submit(self, mbox, msg, via, saved, reply):
        """Deliver msg's MIME to its recipients (state lock held); SMTP runs after the lock."""
        record = {"mime": base64.b64encode(msg.mime).decode(), "via": via, "saved": saved,
                  "at": time.time(), "recipients": msg.recipients(), "local": [],
                  "smtp": {"state": "none", "accepted": [], "refused": {}}}
        remote = []
        for addr in record["recipients"]:
            target = self.mailboxes.get(addr.lower())
            if target is not None:
                target.deliver(target.wellknown["inbox"], msg.mime)
                record["local"].append(addr)
            else:
                remote.append(addr)
        self.sent.setdefault(mbox.address, []).append(record)
        if remote:
            job = {"from": mbox.address, "rcpts": remote, "data": msg.mime, "record": record,
                   "until": time.time() + SMTP_RETRY_FOR}
            reply.after = lambda: self._smtp_try(job)
        return reply

    def _smtp_try(self, job):
        record = job["record"]["smtp"]
        if self.smtp_port is None:
            with self.lock:
                record.update(state="failed", error="no --smtp-port: nowhere to send to")
            return
        data = re.sub(rb"\r?\n", b"\r\n", job["data"])
        try:
            with smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="graph.example.test",
                              timeout=15) as smtp:
                refused = smtp.sendmail(job["from"], job["rcpts"], data)
        except smtplib.SMTPRecipientsRefused as e:
            refused, error = e.recipients, None
            temporary = all(400 <= code < 500 for code, _ in refused.values())
            if temporary:
                return self._smtp_later(job, "recipients refused for now")
            with self.lock:
                record.update(state="refused", refused=refused_text(refused))
            return
        except smtplib.SMTPResponseException as e:
            text = f"{e.smtp_code} {smtp_text(e.smtp_error)}"
            if 400 <= e.smtp_code < 500:
                return self._smtp_later(job, text)
            with self.lock:
                record.update(state="failed", error=text)
            return
        except (OSError, smtplib.SMTPException) as e:
            return self._smtp_later(job, f"{type(e).__name__}: {e}")
        with self.lock:
            record.update(state="accepted" if len(refused) < len(job["rcpts"]) else "refused",
                          accepted=[r for r in job["rcpts"] if r not in refused],
                          refused=refused_text(refused))
            record.pop("error", None)

    def _smtp_later(self, job, error):
        with self.lock:
            if time.time() > job["until"]:
                job["record"]["smtp"].update(state="failed", error=error)
                return
            job["record"]["smtp"].update(state="queued", error=error)
        with self.outbox_cv:
            self.outbox.append((time.time() + SMTP_RETRY_EVERY, job))
            self.outbox_cv.notify()

    def _smtp_worker(self):
        while True:
            with self.outbox_cv:
                while not self.outbox:
                    self.outbox_cv.wait()
                self.outbox.sort(key=lambda p: p[0])
                due, job = self.outbox[0]
                if due > time.time():
                    self.outbox_cv.wait(due - time.time())
                    continue
                self.outbox.pop(0)
            self._smtp_try(job)

    # -- $batch
    def batch(self, call, info):
        body = json_body(call)
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise bad_request("Invalid batch payload format: no requests.")
        if len(requests) > BATCH_LIMIT:
            raise bad_request(f"The batch has {len(requests)} requests; a batch may hold at most "
                              f"{BATCH_LIMIT}.")
        ids = {}
        for item in requests:
            if not isinstance(item, dict) or not all(
                    isinstance(item.get(k), str) and item.get(k) for k in ("id", "method", "url")):
                raise bad_request("Invalid batch payload format: every request needs an id, a "
                                  "method and a url.")
            key = item["id"].lower()
            if key in ids:
                raise bad_request(f"Invalid batch payload format: duplicate id '{item['id']}'.")
            ids[key] = item
            deps = item.get("dependsOn", [])
            if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
                raise bad_request("Invalid batch payload format: dependsOn must be a list of ids.")
        for item in requests:
            for dep in item.get("dependsOn", []):
                if dep.lower() not in ids:
                    raise bad_request(f"Invalid batch payload format: dependsOn names an unknown "
                                      f"request '{dep}'.")
        order, done = [], set()
        pending = list(requests)
        while pending:
            ready = [r for r in pending
                     if all(d.lower() in done for d in r.get("dependsOn", []))]
            if not ready:
                raise bad_request("Invalid batch payload format: dependsOn forms a cycle.")
            first = ready[0]
            order.append(first)
            done.add(first["id"].lower())
            pending.remove(first)
        outer = {k: v for k, v in call.headers.items()
                 if k not in ("content-type", "content-length", "transfer-encoding", "prefer")}
        statuses, responses = {}, []
        for item in order:
            deps = item.get("dependsOn", [])
            if any(statuses.get(d.lower(), 500) >= 400 for d in deps):
                statuses[item["id"].lower()] = 424
                responses.append({"id": item["id"], "status": 424, "headers": {
                    "Content-Type": "application/json"}, "body": error_body(
                    "failedDependency", "A request this one depends on failed.", call)})
                continue
            reply = self._batch_item(call, outer, item)
            statuses[item["id"].lower()] = reply.status
            responses.append(batch_response(item["id"], reply))
        return Reply(200, {"responses": responses})

    def _batch_item(self, call, outer, item):
        inner = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        headers = dict(outer)
        headers.update({k: v for k, v in inner.items() if k != "prefer"})
        prefs = dict(call.prefer)
        prefs.update(parse_prefer(inner.get("prefer", "")))
        if prefs:
            headers["prefer"] = ", ".join(f'{k}="{v}"' if k == "idtype" else
                                          (f"{k}={v}" if v else k) for k, v in prefs.items())
        url = item["url"]
        if url.startswith("https://") or url.startswith("http://"):
            url = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
        if not url.startswith("/"):
            url = "/" + url
        if url.lower().startswith("/v1.0/"):
            url = url[5:]
        body = item.get("body")
        if body is None:
            raw = b""
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
            headers.setdefault("content-type", "application/json")
        return self.execute(Call(item["method"], url, headers, raw, call.host, in_batch=True))

    # -- control endpoints
    def admin(self, method, path, query, body):
        with self.lock:
            return self._admin(method, path, query, body)

    def _admin(self, method, path, query, body):
        def mailbox_of(name):
            mbox = self.mailboxes.get(str(name or "").lower())
            if mbox is None:
                raise KeyError(f"no mailbox '{name}'")
            return mbox

        if method == "GET":
            if path == "/admin/folders":
                mbox = mailbox_of(query.get("mailbox"))
                return 200, {"mailbox": mbox.address, "folders": mbox.folder_map()}
            if path == "/admin/messages":
                mbox = mailbox_of(query.get("mailbox"))
                folder = mbox.by_path(query.get("folder", "inbox"))
                if folder is None:
                    return 404, {"error": f"no folder '{query.get('folder')}'"}
                with_mime = query.get("mime", "1") != "0"
                out = []
                for m in folder.messages.values():
                    entry = {"id": m.iid, "internetMessageId": m.message_id, "subject": m.subject,
                             "size": len(m.mime), "categories": list(m.categories),
                             "isRead": m.is_read, "receivedDateTime": now_iso(m.received)}
                    if with_mime:
                        entry["mime"] = base64.b64encode(m.mime).decode()
                    out.append(entry)
                return 200, {"messages": out}
            if path == "/admin/sent":
                name = str(query.get("mailbox", "")).lower()
                return 200, {"sent": json.loads(json.dumps(self.sent.get(name, [])))}
            if path == "/admin/log":
                name = str(query.get("mailbox", "")).lower()
                return 200, json.loads(json.dumps(self._log(name)))
            return 404, {"error": "no such endpoint"}

        if path == "/admin/mailbox":
            address = str(body.get("mailbox") or "").strip()
            if "@" not in address:
                return 400, {"error": "mailbox must be an address"}
            mbox = Mailbox(address.lower(), body.get("inbox_name") or "Inbox")
            for folder_path in body.get("folders") or []:
                mbox.make_path(folder_path)
            self.mailboxes[mbox.address] = mbox
            self.sent.pop(mbox.address, None)
            return 200, {"mailbox": mbox.address, "folders": mbox.folder_map()}
        if path == "/admin/deliver":
            mbox = mailbox_of(body.get("mailbox"))
            folder = mbox.by_path(body.get("folder") or "inbox")
            if folder is None:
                return 404, {"error": f"no folder '{body.get('folder')}'"}
            received = None
            if body.get("received"):
                received = parse_time(body["received"])
                if received is None:
                    return 400, {"error": "received must be an ISO 8601 time"}
            ids = []
            for encoded in body.get("mimes") or []:
                try:
                    mime = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError, TypeError):
                    return 400, {"error": "mimes must be base64 strings"}
                ids.append(mbox.deliver(folder, mime, received,
                                        is_read=bool(body.get("is_read"))).iid)
            return 200, {"ids": ids}
        if path == "/admin/policy":
            client = body.get("client_id")
            if not client:
                return 400, {"error": "client_id missing"}
            mailboxes = body.get("mailboxes")
            if mailboxes is None:
                self.policies.pop(client, None)
            else:
                self.policies[client] = {str(m).lower() for m in mailboxes}
            return 200, {"ok": True}
        if path == "/admin/throttle":
            name = str(body.get("mailbox") or "").lower()
            status = int(body.get("status", 429))
            if status not in (429, 503):
                return 400, {"error": "status must be 429 or 503"}
            self.throttles[name] = {"remaining": int(body.get("requests", 1)),
                                    "retry_after": int(body.get("retry_after", 1)),
                                    "status": status}
            return 200, {"ok": True}
        if path == "/admin/latency":
            name = str(body.get("mailbox") or "").lower()
            self.latency[name] = float(body.get("seconds") or 0)
            return 200, {"ok": True}
        if path == "/admin/expire-delta":
            mbox = mailbox_of(body.get("mailbox"))
            mbox.skip_tokens.clear()
            mbox.delta_tokens.clear()
            return 200, {"ok": True}
        if path == "/admin/reset-log":
            name = str(body.get("mailbox") or "").lower()
            self.logs.pop(name, None)
            return 200, {"ok": True}
        return 404, {"error": "no such endpoint"}


class _Stay:
    """A message's id as it was in a folder it has left (for @removed entries)."""

    def __init__(self, iid, stay):
        self.iid, self.stay = iid, stay


def in_hidden(mbox, folder):
    while folder is not None:
        if folder.wellknown in ("recoverableitemsdeletions", "recoverableitemspurges"):
            return True
        folder = folder.parent
    return False


def internet_headers(mime):
    try:
        msg = HEADER_PARSER.parsebytes(mime)
        return [{"name": clean(k), "value": clean(str(v))} for k, v in msg.items()]
    except Exception:  # noqa: BLE001
        return []


def smtp_text(text):
    return clean(text.decode(errors="replace") if isinstance(text, bytes) else text)


def refused_text(refused):
    return {addr: f"{code} {smtp_text(text)}" for addr, (code, text) in refused.items()}


def json_body(call):
    if not call.body:
        return {}
    try:
        return json.loads(call.body)
    except ValueError:
        raise bad_request("Unable to read JSON request payload.", "BadRequest") from None


def error_body(code, message, call):
    return {"error": {"code": code, "message": message, "innerError": {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": call.request_id, "client-request-id": call.client_request_id}}}


def error_reply(err, call):
    return Reply(err.status, error_body(err.code, err.message, call), headers=err.headers)


def batch_response(item_id, reply):
    out = {"id": item_id, "status": reply.status, "headers": dict(reply.headers)}
    out["headers"].pop("request-id", None)
    if reply.body is not None:
        out["headers"]["Content-Type"] = "application/json"
        out["body"] = reply.body
    elif reply.raw:
        out["headers"]["Content-Type"] = reply.content_type or "application/octet-stream"
        out["body"] = base64.b64encode(reply.raw).decode()
    return out


def make_handler(server):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # request lines only: no query, no header, no body
            # When the answer went out, its status and how long the request took: a test that
            # waits for an answer can be matched with this line.
            code = args[1] if fmt.startswith('"%s"') and len(args) > 1 else "-"
            took = time.monotonic() - getattr(self, "started", time.monotonic())
            sys.stderr.write("graph-server: %s %s %s %s %.3fs\n" % (
                time.strftime("%H:%M:%S", time.gmtime()), self.command,
                self.path.split("?")[0], code, took))

        def read_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def send(self, status, body=None, raw=None, content_type=None, headers=None,
                 call=None):
            if body is not None:
                raw = json.dumps(body).encode()
                content_type = "application/json; odata.metadata=minimal; charset=utf-8"
            raw = raw or b""
            self.send_response(status)
            if raw or content_type:
                self.send_header("Content-Type", content_type or "application/octet-stream")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Cache-Control", "no-store")
            if call is not None:
                self.send_header("request-id", call.request_id)
                self.send_header("client-request-id", call.client_request_id)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

        def setup(self):
            self.request.settimeout(120)
            self.request.do_handshake()
            super().setup()

        def handle_one_request(self):
            try:
                super().handle_one_request()
            except (ConnectionError, ssl.SSLError, TimeoutError):
                self.close_connection = True

        def dispatch(self):
            self.started = time.monotonic()
            body = self.read_body()
            target = self.path
            path, _, query_string = target.partition("?")
            if path.startswith("/admin/"):
                query = {k: v[0] for k, v in urllib.parse.parse_qs(query_string).items()}
                try:
                    data = json.loads(body or b"{}")
                    if not isinstance(data, dict):
                        raise ValueError
                except ValueError:
                    return self.send(400, {"error": "body is not a JSON object"})
                try:
                    status, answer = server.admin(self.command, path, query, data)
                except KeyError as e:
                    status, answer = 404, {"error": str(e.args[0])}
                except (TypeError, ValueError) as e:
                    status, answer = 400, {"error": str(e)}
                return self.send(status, answer)
            if path == "/health":
                return self.send(200, {"ok": True})
            if path == "/v1.0" or path.startswith("/v1.0/"):
                headers = {k: v for k, v in self.headers.items()}
                prefer = self.headers.get_all("Prefer") or []
                if prefer:
                    headers["Prefer"] = ", ".join(prefer)
                host = self.headers.get("Host") or f"localhost:{self.server.server_address[1]}"
                call = Call(self.command, target[len("/v1.0"):] or "/", headers, body, host)
                reply = server.execute(call)
                return self.send(reply.status, reply.body, reply.raw, reply.content_type,
                                 reply.headers, call=call)
            return self.send(404, {"error": {"code": "BadRequest",
                                             "message": "Only /v1.0 is served here."}})

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = dispatch

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True, help="PEM server certificate")
    ap.add_argument("--key", required=True, help="PEM key of the certificate")
    ap.add_argument("--token-url", required=True,
                    help="the lab token provider, e.g. http://127.0.0.1:14080")
    ap.add_argument("--smtp-port", type=int,
                    help="the lab's plain SMTP port on 127.0.0.1, for recipients elsewhere")
    ap.add_argument("--lab-dir", help="the lab this server belongs to (lets mail-lab find it)")
    args = ap.parse_args()
    graph = GraphServer(args.token_url, args.smtp_port)
    server = Server((args.host, args.port), make_handler(graph))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    # The handshake happens in the request's thread, so a slow client cannot stall accept().
    server.socket = context.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    server.serve_forever()


if __name__ == "__main__":
    main()
