#!/usr/bin/env python3
"""The mail lab's OAuth 2.0 provider: a stand-in for Microsoft's and Google's token endpoints.

No real identity provider can run on a loopback-only machine, so the lab has this one; the mail
servers that check its tokens are the real ones: Dovecot's `oauth2` passdb asks /introspect
(RFC 7662) about every XOAUTH2/OAUTHBEARER login, for IMAP, POP3 and, through Dovecot SASL,
Postfix submission.

Provider endpoints (form-encoded, as RFC 6749 wants; client auth by HTTP Basic or by
client_id/client_secret in the form):
  POST /token        grant_type client_credentials | refresh_token (rotated on every use; the
                     used one stays valid for REUSE_GRACE seconds, see below) |
                     urn:ietf:params:oauth:grant-type:device_code (RFC 8628)
  POST /devicecode   device authorization request (RFC 8628 section 3.1)
  POST /introspect   RFC 7662; {"active": true, "username": ...} for a live access token, and for
                     an app token (below) also "client_id", "aud" and "roles"
Errors are RFC 6749 JSON: invalid_client (401), invalid_grant, unsupported_grant_type,
authorization_pending, slow_down, access_denied, expired_token (400); 503 while "down".

Control endpoints for the tests (JSON in, JSON out):
  POST /admin/client    {"client_id", "client_secret", "username", "ttl"?, "roles"?, "tenant"?}:
                        register or replace a client; its tokens open the mailbox `username`;
                        ttl in seconds. With "roles" (application permissions such as
                        ["Mail.ReadWrite", "Mail.Send"]) the client is an app registered for
                        Microsoft Graph: see "App tokens" below. "tenant" defaults to
                        contoso.onmicrosoft.com.
  POST /admin/refresh   {"client_id", "username"}: issue a refresh token as if the user had
                        approved (what a device flow leaves behind)
  POST /admin/approve   {"user_code", "username"} or {"user_code", "deny": true}
  POST /admin/revoke    {"client_id"}: every refresh and access token of that client dies
  POST /admin/settings  {"down": bool}: the token endpoint answers 503 while down
  GET  /admin/stats     grants per client and grant type, introspections, live tokens

App tokens. A client registered with "roles" gets, from client_credentials, an access token
shaped like the ones Microsoft Entra ID issues to daemon apps
(https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference): a JWT
base64url(header).base64url(payload).base64url(signature) with the header
{"typ": "JWT", "alg": "RS256", "kid": "lab"} and the claims aud, iss
(https://sts.windows.net/<tid>/), tid, appid (= client_id), roles, iat, nbf, exp and a random uti.
The signature is random bytes: nobody verifies it, the stand-in Graph endpoint
(mail-lab.d/graph-server.py) asks /introspect like Dovecot does, so the token is still entered in
this server's table, lives until exp or /admin/revoke, and introspects with its claims.
  aud  https://graph.microsoft.com when the requested scope names
       https://graph.microsoft.com/.default (the client credentials flow asks for
       "{resource}/.default"); for another "{resource}/.default" scope that resource, e.g.
       https://outlook.office365.com; without a scope no aud, as for every other token.
  tid  the tenant's GUID: the tenant value itself if it is one, else a UUID (version 5) derived
       from the tenant name, so a name always maps to the same GUID. (guess: Entra puts the
       directory's GUID here; the lab has no directory, so it makes one up.)
Clients without "roles" get the same opaque "at-..." tokens as before, whatever the scope.

Every token is random; nothing is written to disk and nothing secret is logged.

  token-server.py --port PORT [--host 127.0.0.1] [--ttl 20]
"""

import argparse
import base64
import json
import secrets
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

# A used refresh token stays valid this long after its rotation, as with providers that rotate
# (Okta's grace period, 30 s by default; Auth0's reuse interval; Microsoft does not revoke a
# rotated token at all). No client can close the moment between the provider's answer and its
# saving the new token: a client killed in it holds only the old one.
REUSE_GRACE = 30

GRAPH_RESOURCE = "https://graph.microsoft.com"
DEFAULT_TENANT = "contoso.onmicrosoft.com"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tenant_id(tenant):
    """The tenant's GUID: itself if it is one, else one derived from its name."""
    try:
        return str(uuid.UUID(tenant))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, tenant.lower()))


def audience(scope):
    """The aud claim for a client credentials request's scope ("{resource}/.default")."""
    for item in scope.split():
        if item.rstrip("/") == GRAPH_RESOURCE + "/.default":
            return GRAPH_RESOURCE
    for item in scope.split():
        if item.endswith("/.default") and "://" in item:
            return item[: -len("/.default")]
    return None


class Provider:
    def __init__(self, ttl):
        self.lock = threading.Lock()
        self.default_ttl = ttl
        self.clients = {}  # client_id -> {"secret", "username", "ttl", "roles", "tenant"}
        self.access = {}  # token -> {"client_id", "username", "expires"[, "roles", "aud"]}
        self.refresh = {}  # token -> {"client_id", "username"}
        self.rotated = {}  # used refresh token -> ({"client_id", "username"}, valid until)
        self.devices = {}  # device_code -> {"client_id", "user_code", "status", "username", ...}
        self.down = False
        self.grants = {}  # client_id -> {grant_type: count}
        self.introspections = 0

    # -- helpers (lock held)
    def _count(self, client_id, grant):
        per = self.grants.setdefault(client_id, {})
        per[grant] = per.get(grant, 0) + 1

    def _issue(self, client_id, username, with_refresh):
        ttl = self.clients[client_id]["ttl"]
        token = "at-" + secrets.token_urlsafe(24)
        self.access[token] = {"client_id": client_id, "username": username,
                              "expires": time.time() + ttl}
        body = {"access_token": token, "token_type": "Bearer", "expires_in": ttl}
        if with_refresh:
            rt = "rt-" + secrets.token_urlsafe(24)
            self.refresh[rt] = {"client_id": client_id, "username": username}
            body["refresh_token"] = rt
        return body

    def _issue_app_token(self, client_id, scope):
        """An Entra-shaped JWT for a client registered with roles (see the module docstring)."""
        client = self.clients[client_id]
        ttl = client["ttl"]
        now = int(time.time())
        tid = tenant_id(client["tenant"])
        aud = audience(scope)
        claims = {"iss": f"https://sts.windows.net/{tid}/", "iat": now, "nbf": now,
                  "exp": now + ttl, "tid": tid, "appid": client_id,
                  "roles": list(client["roles"]), "uti": b64url(secrets.token_bytes(16)),
                  "ver": "1.0"}
        if aud is not None:
            claims["aud"] = aud
        header = {"typ": "JWT", "alg": "RS256", "kid": "lab"}
        token = ".".join((b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()),
                          b64url(secrets.token_bytes(256))))
        self.access[token] = {"client_id": client_id, "username": client["username"],
                              "expires": now + ttl, "roles": list(client["roles"]), "aud": aud}
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}

    # -- provider endpoints: each returns (status, json body)
    def token(self, form, client_id, client_secret):
        with self.lock:
            if self.down:
                return 503, {"error": "temporarily_unavailable",
                             "error_description": "the lab's token endpoint is down"}
            client = self.clients.get(client_id)
            grant = form.get("grant_type", "")
            public_ok = grant in (DEVICE_GRANT, "refresh_token") and client_secret is None
            if client is None or not (public_ok or client["secret"] == client_secret):
                return 401, {"error": "invalid_client",
                             "error_description": "unknown client or wrong client secret"}
            if grant == "client_credentials":
                self._count(client_id, grant)
                if client["roles"] is not None:
                    return 200, self._issue_app_token(client_id, form.get("scope", ""))
                return 200, self._issue(client_id, client["username"], with_refresh=False)
            if grant == "refresh_token":
                used = form.get("refresh_token", "")
                entry = self.refresh.pop(used, None)
                if entry is not None:
                    self.rotated[used] = (entry, time.time() + REUSE_GRACE)
                elif used in self.rotated and time.time() < self.rotated[used][1]:
                    entry = self.rotated[used][0]
                if entry is None or entry["client_id"] != client_id:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "refresh token unknown, used or revoked"}
                self._count(client_id, grant)
                return 200, self._issue(client_id, entry["username"], with_refresh=True)
            if grant == DEVICE_GRANT:
                dev = self.devices.get(form.get("device_code", ""))
                if dev is None or dev["client_id"] != client_id:
                    return 400, {"error": "invalid_grant", "error_description": "unknown device code"}
                now = time.time()
                if now > dev["expires"]:
                    return 400, {"error": "expired_token"}
                if dev["status"] == "denied":
                    return 400, {"error": "access_denied"}
                if dev["status"] == "pending":
                    too_soon = now - dev["last_poll"] < dev["interval"] * 0.5
                    dev["last_poll"] = now
                    return 400, {"error": "slow_down" if too_soon else "authorization_pending"}
                del self.devices[form["device_code"]]
                self._count(client_id, "device_code")
                return 200, self._issue(client_id, dev["username"], with_refresh=True)
            return 400, {"error": "unsupported_grant_type"}

    def device_authorization(self, form, client_id):
        with self.lock:
            if client_id not in self.clients:
                return 401, {"error": "invalid_client"}
            code = "dc-" + secrets.token_urlsafe(24)
            user_code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
            self.devices[code] = {"client_id": client_id, "user_code": user_code,
                                  "status": "pending", "username": None, "interval": 1,
                                  "expires": time.time() + 600, "last_poll": 0.0,
                                  "scope": form.get("scope", "")}
            return 200, {"device_code": code, "user_code": user_code,
                         "verification_uri": "https://login.example.test/device",
                         "expires_in": 600, "interval": 1}

    def introspect(self, form):
        with self.lock:
            self.introspections += 1
            entry = self.access.get(form.get("token", ""))
            if entry is None or entry["expires"] < time.time():
                return 200, {"active": False}
            answer = {"active": True, "username": entry["username"],
                      "client_id": entry["client_id"], "exp": int(entry["expires"])}
            if "roles" in entry:
                answer["roles"] = entry["roles"]
                answer["aud"] = entry["aud"]
            return 200, answer

    # -- control endpoints
    def admin(self, path, body):
        with self.lock:
            if path == "/admin/client":
                roles = body.get("roles")
                if roles is not None and not (isinstance(roles, list)
                                              and all(isinstance(r, str) for r in roles)):
                    return 400, {"error": "roles must be a list of strings"}
                self.clients[body["client_id"]] = {"secret": body.get("client_secret"),
                                                   "username": body.get("username"),
                                                   "ttl": int(body.get("ttl", self.default_ttl)),
                                                   "roles": roles,
                                                   "tenant": body.get("tenant") or DEFAULT_TENANT}
                return 200, {"ok": True}
            if path == "/admin/refresh":
                if body["client_id"] not in self.clients:
                    return 404, {"error": "unknown client"}
                rt = "rt-" + secrets.token_urlsafe(24)
                self.refresh[rt] = {"client_id": body["client_id"], "username": body["username"]}
                return 200, {"refresh_token": rt}
            if path == "/admin/approve":
                for dev in self.devices.values():
                    if dev["user_code"] == body["user_code"]:
                        dev["status"] = "denied" if body.get("deny") else "approved"
                        dev["username"] = body.get("username")
                        return 200, {"ok": True}
                return 404, {"error": "unknown user code"}
            if path == "/admin/revoke":
                cid = body["client_id"]
                self.refresh = {k: v for k, v in self.refresh.items() if v["client_id"] != cid}
                self.rotated = {k: v for k, v in self.rotated.items() if v[0]["client_id"] != cid}
                self.access = {k: v for k, v in self.access.items() if v["client_id"] != cid}
                return 200, {"ok": True}
            if path == "/admin/settings":
                if "down" in body:
                    self.down = bool(body["down"])
                return 200, {"ok": True, "down": self.down}
            if path == "/admin/stats":
                now = time.time()
                return 200, {"grants": self.grants, "introspections": self.introspections,
                             "live_access_tokens": sum(1 for v in self.access.values()
                                                       if v["expires"] > now),
                             "pending_devices": sum(1 for v in self.devices.values()
                                                    if v["status"] == "pending")}
            return 404, {"error": "no such endpoint"}


def client_auth(headers, form):
    """(client_id, client_secret or None) from HTTP Basic (RFC 6749 2.3.1) or the form."""
    auth = headers.get("Authorization", "")
    if auth.startswith("Basic "):
        try:
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            return urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(secret)
        except (ValueError, UnicodeDecodeError):
            return "", None
    return form.get("client_id", ""), form.get("client_secret")


def make_handler(provider):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # request lines only, never bodies
            sys.stderr.write("token-server: %s %s\n" % (self.command, self.path.split("?")[0]))

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_GET(self):
            if self.path == "/admin/stats":
                self.reply(*provider.admin(self.path, {}))
            elif self.path == "/health":
                self.reply(200, {"ok": True})
            else:
                self.reply(404, {"error": "no such endpoint"})

        def do_POST(self):
            raw = self.body()
            path = self.path.split("?")[0]
            if path.startswith("/admin/"):
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return self.reply(400, {"error": "body is not JSON"})
                return self.reply(*provider.admin(path, body))
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode(errors="replace")).items()}
            if path == "/token":
                cid, secret = client_auth(self.headers, form)
                return self.reply(*provider.token(form, cid, secret))
            if path == "/devicecode":
                cid, _ = client_auth(self.headers, form)
                return self.reply(*provider.device_authorization(form, cid))
            if path == "/introspect":
                return self.reply(*provider.introspect(form))
            return self.reply(404, {"error": "no such endpoint"})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ttl", type=int, default=20, help="access token lifetime in seconds")
    ap.add_argument("--lab-dir", help="the lab this server belongs to (lets mail-lab find it)")
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Provider(args.ttl)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
