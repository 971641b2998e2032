#!/usr/bin/env python3
"""Checks the lab's stand-in Graph endpoint (graph-server.py) against a running lab, end to end.

  scripts/mail-lab up
  python3 scripts/mail-lab.d/graph-selftest.py [LAB_ENV]   (default $MAIL_LAB_ENV, else
                                                            /tmp/mail2ticket-lab/lab.env)

Every name it makes (apps, mailboxes, the Dovecot user) carries a random suffix, so it can run
beside tests on the same lab. It registers apps with roles at the token provider and exercises
every endpoint: folders and paging, message lists with $select/$orderby/$expand, ids with and
without Prefer: IdType="ImmutableId", delta across moves and deletes, $batch, forced and
concurrency throttling, the access policy, missing roles, the audience, sendMail to a stand-in
mailbox, to a Dovecot user of the lab (read back over IMAP) and to a domain Postfix refuses,
and drafts sent with and without PidTagDeleteAfterSubmit. Ends with "N passed, N failed" and
exits 1 on any failure.
"""

import base64
import concurrent.futures
import imaplib
import json
import os
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

PASSED, FAILED = [], []


def check(name, ok, detail=""):
    (PASSED if ok else FAILED).append(name)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok or not detail else f": {detail}"))
    return ok


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep:
                env[key] = value
    return env


class Lab:
    def __init__(self, env):
        self.env = env
        self.graph = env["MAIL_LAB_GRAPH_URL"]
        self.base = self.graph[: -len("/v1.0")]
        self.oauth = env["MAIL_LAB_OAUTH_URL"]
        self.tls = ssl.create_default_context(cafile=env["MAIL_LAB_CA"])

    def http(self, method, url, body=None, headers=None):
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, context=self.tls if url.startswith("https") else None,
                                        timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def admin(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        status, _, raw = self.http(method, self.base + path, data,
                                   {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {raw[:200]!r}")
        return json.loads(raw)

    def app(self, client_id, roles, scope="https://graph.microsoft.com/.default"):
        data = json.dumps({"client_id": client_id, "client_secret": "s3cret", "roles": roles,
                           "ttl": 600}).encode()
        self.http("POST", self.oauth + "/admin/client", data)
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                                       "client_secret": "s3cret", "scope": scope}).encode()
        status, _, raw = self.http("POST", self.oauth + "/token", form,
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200, raw
        return json.loads(raw)["access_token"]

    def api(self, method, path, token, body=None, headers=None, immutable=False):
        """(status, headers, JSON or bytes) of a /v1.0 call; path relative to /v1.0 or absolute."""
        h = {"Authorization": f"Bearer {token}"} if token else {}
        h.update(headers or {})
        if immutable:
            h["Prefer"] = ", ".join(p for p in ('IdType="ImmutableId"', h.get("Prefer")) if p)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        url = path if path.startswith("https://") else self.graph + path
        status, rh, raw = self.http(method, url, body, h)
        if rh.get("Content-Type", "").startswith("application/json") and raw:
            return status, rh, json.loads(raw)
        return status, rh, raw


def mime(sender, to, subject, body="Hello.\r\n", extra=""):
    mid = f"<{secrets.token_hex(8)}@selftest.example>"
    text = (f"From: Sender <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
            f"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n{extra}MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}")
    return text.encode(), mid


def b64(data):
    return base64.b64encode(data).decode()


def code_of(body):
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def main():
    env_path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "MAIL_LAB_ENV", "/tmp/mail2ticket-lab/lab.env")
    lab = Lab(read_env(env_path))
    tag = secrets.token_hex(3)
    shop = f"shop-{tag}@m365.example.test"
    other = f"other-{tag}@m365.example.test"
    dovecot_user = f"graphtest-{tag}@example.test"
    q = urllib.parse.quote

    rw = lab.app(f"app-rw-{tag}", ["Mail.ReadWrite", "Mail.Send"])
    ro = lab.app(f"app-ro-{tag}", ["Mail.Read"])
    wrong_aud = lab.app(f"app-aud-{tag}", ["Mail.ReadWrite"], "https://outlook.office365.com/.default")
    fenced_id = f"app-fenced-{tag}"
    fenced = lab.app(fenced_id, ["Mail.ReadWrite"])

    made = lab.admin("POST", "/admin/mailbox", {"mailbox": shop, "inbox_name": "Posteingang",
                                                "folders": ["Erledigt", "Posteingang/Shop"]})
    folders = made["folders"]
    lab.admin("POST", "/admin/mailbox", {"mailbox": other})
    U = f"/users/{q(shop)}"

    # -- authentication
    st, h, body = lab.api("GET", f"{U}/mailFolders", None)
    check("no token: 401 InvalidAuthenticationToken with WWW-Authenticate",
          st == 401 and code_of(body) == "InvalidAuthenticationToken"
          and h.get("WWW-Authenticate", "").startswith("Bearer"), f"{st} {body}")
    st, _, body = lab.api("GET", f"{U}/mailFolders", "at-not-a-token")
    check("unknown token: 401", st == 401 and code_of(body) == "InvalidAuthenticationToken")
    st, _, body = lab.api("GET", f"{U}/mailFolders", wrong_aud)
    check("token for outlook.office365.com: 401 Invalid audience",
          st == 401 and body["error"]["message"] == "Invalid audience.", f"{st} {body}")
    inner = body.get("error", {}).get("innerError", {})
    check("error envelope has innerError date, request-id, client-request-id",
          all(k in inner for k in ("date", "request-id", "client-request-id")), inner)

    # -- folders
    st, _, body = lab.api("GET", f"{U}/mailFolders", rw)
    names = [f["displayName"] for f in body.get("value", [])]
    check("mailFolders lists the well-known folders, inbox under its name",
          st == 200 and names == ["Posteingang", "Drafts", "Sent Items", "Deleted Items",
                                  "Archive", "Junk Email", "Erledigt"], names)
    check("folder ids are opaque, never the name",
          all(f["id"].startswith("AAMk") and f["id"] != f["displayName"] for f in body["value"]))
    st, _, body = lab.api("GET", f"{U}/mailFolders?$top=3", rw)
    seen, pages = [f["displayName"] for f in body["value"]], 1
    while "@odata.nextLink" in body:
        st, _, body = lab.api("GET", body["@odata.nextLink"], rw)
        seen += [f["displayName"] for f in body["value"]]
        pages += 1
    check("folder paging with $top=3: 3 pages, same folders", pages == 3 and seen == names,
          f"{pages} {seen}")
    st, _, body = lab.api("GET", f"{U}/mailFolders?$filter=" + q("displayName eq 'erledigt'"), rw)
    check("$filter=displayName eq (case-insensitive)",
          st == 200 and [f["id"] for f in body["value"]] == [folders["Erledigt"]], body)
    st, _, body = lab.api("GET", f"{U}/mailFolders/INBOX/childFolders", rw)
    check("childFolders of the inbox (well-known name in any case)",
          st == 200 and [f["displayName"] for f in body["value"]] == ["Shop"], body)
    st, _, body = lab.api("GET", f"{U}/mailFolders/{folders['inbox']}", rw)
    check("folder by id", st == 200 and body["displayName"] == "Posteingang", body)
    st, _, body = lab.api("GET", f"{U}/mailFolders/nosuchfolder", rw)
    check("unknown folder: 404 ErrorItemNotFound", st == 404 and code_of(body) == "ErrorItemNotFound")
    st, _, body = lab.api("GET", f"/users/{q('nobody-' + tag + '@m365.example.test')}/mailFolders",
                          rw)
    check("unknown mailbox: 404 ErrorInvalidUser", st == 404 and code_of(body) == "ErrorInvalidUser")
    st, _, body = lab.api("GET", f"/users/{q(shop.upper())}/mailFolders/inbox", rw)
    check("mailbox address is case-insensitive", st == 200, st)

    # -- messages
    mimes = [mime("customer@example.org", shop, f"Order {i:02d}") for i in range(25)]
    t0 = time.time() - 3600
    ids = []
    for i, (data, _) in enumerate(mimes):
        ids += lab.admin("POST", "/admin/deliver", {
            "mailbox": shop, "mimes": [b64(data)],
            "received": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 60 * i))})["ids"]
    garbage = b"\xff\xfe not a mail at all \x00\r\n\r\n\x80"
    gid = lab.admin("POST", "/admin/deliver", {"mailbox": shop, "folder": "Erledigt",
                                               "mimes": [b64(garbage)]})["ids"][0]
    st, _, body = lab.api("GET", f"{U}/mailFolders/inbox/messages", rw, immutable=True)
    check("message list: 10 a page by default, newest first, nextLink",
          st == 200 and len(body["value"]) == 10 and body["value"][0]["subject"] == "Order 24"
          and "@odata.nextLink" in body, body.get("value", [{}])[0].get("subject"))
    got = []
    url = f"{U}/mailFolders/inbox/messages?$select=subject,internetMessageId&$orderby=" + q(
        "receivedDateTime asc") + "&$top=7"
    while url:
        st, _, body = lab.api("GET", url, rw, immutable=True)
        got += body["value"]
        url = body.get("@odata.nextLink")
    check("paging $top=7 ascending over 25 mails",
          [m["subject"] for m in got] == [f"Order {i:02d}" for i in range(25)]
          and [m["id"] for m in got] == ids, len(got))
    check("$select: only the selected properties, id and @odata.etag",
          set(got[0]) == {"@odata.etag", "id", "subject", "internetMessageId"}, sorted(got[0]))
    st, h, body = lab.api("GET", f"{U}/mailFolders/inbox/messages?$select=subject", rw,
                          headers={"Prefer": "odata.maxpagesize=4"})
    check("Prefer: odata.maxpagesize=4 and Preference-Applied",
          len(body["value"]) == 4 and h.get("Preference-Applied") == "odata.maxpagesize=4", h)
    st, _, body = lab.api("GET", f"{U}/mailFolders/inbox/messages?$select=nosuchproperty", rw)
    check("unknown $select property: 400", st == 400, st)
    expand = "$expand=" + q("singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')")
    st, _, body = lab.api("GET", f"{U}/messages/{ids[3]}?$select=subject&{expand}", rw)
    check("$expand PidTagMessageSize: Integer 0xe08 with the size as a string",
          body.get("singleValueExtendedProperties") == [
              {"id": "Integer 0xe08", "value": str(len(mimes[3][0]))}], body)
    st, h, raw = lab.api("GET", f"{U}/messages/{ids[5]}/$value", rw)
    check("$value: the exact MIME bytes, text/plain",
          st == 200 and raw == mimes[5][0] and h.get("Content-Type", "").startswith("text/plain"))
    st, _, raw = lab.api("GET", f"{U}/messages/{gid}/$value", rw)
    st2, _, body = lab.api("GET", f"{U}/mailFolders/{folders['Erledigt']}/messages", rw)
    check("a mail that does not parse still lists and reads back exactly",
          raw == garbage and st2 == 200 and len(body["value"]) == 1
          and body["value"][0]["subject"] is None, body)
    st, _, body = lab.api("GET", f"{U}/mailFolders/inbox/messages?$filter=" + q(
        f"internetMessageId eq '{mimes[7][1]}'") + "&$select=subject", rw, immutable=True)
    check("$filter=internetMessageId eq", [m["id"] for m in body.get("value", [])] == [ids[7]], body)

    # -- ids
    st, _, body = lab.api("GET", f"{U}/messages/{ids[0]}", rw)
    regular = body["id"]
    check("without Prefer IdType the id is a regular one", st == 200 and regular != ids[0], regular)
    st, _, body = lab.api("GET", f"{U}/messages/{ids[0]}", rw, immutable=True)
    check('with Prefer: IdType="ImmutableId" the id is the immutable one', body["id"] == ids[0])
    st, _, body = lab.api("GET", f"{U}/messages/{regular}?$select=subject", rw)
    check("a regular id works in paths", st == 200 and body["subject"] == "Order 00")

    # -- delta (immutable ids), with moves and deletes in between
    def delta_round(url, pagesize, immutable=True):
        items, pages = [], 0
        while True:
            st, h, body = lab.api("GET", url, rw, immutable=immutable,
                                  headers={"Prefer": f"odata.maxpagesize={pagesize}"})
            assert st == 200, (st, body)
            pages += 1
            items += body["value"]
            if "@odata.deltaLink" in body:
                return items, body["@odata.deltaLink"], pages
            url = body["@odata.nextLink"]

    items, delta_link, pages = delta_round(
        f"{U}/mailFolders/inbox/messages/delta?$select=subject,isRead", 10)
    check("delta first round: 25 messages in 3 pages, then a deltaLink",
          len(items) == 25 and pages == 3 and {m["id"] for m in items} == set(ids), (len(items), pages))
    lab.api("POST", f"{U}/messages/{ids[0]}/move", rw, {"destinationId": folders["Erledigt"]})
    st_move, _, moved = lab.api("POST", f"{U}/messages/{ids[1]}/move", rw,
                                {"destinationId": folders["Erledigt"]}, immutable=True)
    check("move: 201 with the message, immutable id unchanged",
          st_move == 201 and moved["id"] == ids[1] and moved["parentFolderId"] == folders["Erledigt"],
          moved)
    st, _, _ = lab.api("DELETE", f"{U}/messages/{ids[2]}", rw)
    check("DELETE: 204", st == 204, st)
    st, _, _ = lab.api("POST", f"{U}/messages/{ids[3]}/permanentDelete", rw)
    check("permanentDelete: 204", st == 204, st)
    st, _, body = lab.api("PATCH", f"{U}/messages/{ids[4]}", rw, {"isRead": True,
                                                                 "categories": ["Ticket"]})
    check("PATCH isRead and categories: 200", st == 200 and body["isRead"] is True
          and body["categories"] == ["Ticket"], body)
    new_id = lab.admin("POST", "/admin/deliver", {"mailbox": shop, "mimes": [
        b64(mime("late@example.org", shop, "Late")[0])]})["ids"][0]
    lab.api("POST", f"{U}/messages/{gid}/move", rw, {"destinationId": "inbox"})
    items, delta_link2, _ = delta_round(delta_link, 10)
    removed = {m["id"] for m in items if "@removed" in m}
    present = {m["id"]: m for m in items if "@removed" not in m}
    check("delta after 2 moves out, a delete and a purge: 4 removed (reason deleted)",
          removed == set(ids[:4]) and all(m["@removed"] == {"reason": "deleted"}
                                          for m in items if "@removed" in m), removed)
    check("delta: the changed, the delivered and the moved-in message as objects",
          set(present) == {ids[4], new_id, gid} and present[ids[4]]["isRead"] is True,
          sorted(present))
    items, _, _ = delta_round(delta_link2, 10)
    check("delta with nothing changed: empty", items == [], items)
    st, _, body = lab.api("GET", f"{U}/messages/{regular}", rw)
    check("a regular id of a message that moved since: 404 ErrorItemNotFound",
          st == 404 and code_of(body) == "ErrorItemNotFound", st)
    st, _, body = lab.api("GET", f"{U}/messages/{ids[0]}", rw)
    check("the immutable id still works after the move", st == 200
          and body["parentFolderId"] == folders["Erledigt"])
    msgs = lab.admin("GET", f"/admin/messages?mailbox={q(shop)}&folder=recoverableitemsdeletions")
    purged = lab.admin("GET", f"/admin/messages?mailbox={q(shop)}&folder=recoverableitemspurges"
                       "&mime=0")
    check("DELETE lands in recoverableitemsdeletions, permanentDelete in ...purges",
          [m["id"] for m in msgs["messages"]] == [ids[2]]
          and [m["id"] for m in purged["messages"]] == [ids[3]] and "mime" not in purged["messages"][0])
    # regular-id delta: a removed entry carries the regular id the client saw
    items, link_r, _ = delta_round(
        f"{U}/mailFolders/{folders['Erledigt']}/messages/delta?$select=subject", 50, immutable=False)
    before = {m["subject"]: m["id"] for m in items}
    lab.api("POST", f"{U}/messages/{ids[1]}/move", rw, {"destinationId": "archive"})
    items, _, _ = delta_round(link_r, 50, immutable=False)
    check("delta without IdType: the removed entry has the regular id seen before",
          [m["id"] for m in items if "@removed" in m] == [before["Order 01"]], items)
    lab.admin("POST", "/admin/expire-delta", {"mailbox": shop})
    st, _, body = lab.api("GET", delta_link2, rw)
    check("forgotten deltatoken: 410 syncStateNotFound", st == 410
          and code_of(body) == "syncStateNotFound", (st, body))

    # -- $batch
    reqs = [{"id": str(i), "method": "GET", "url": f"{U}/messages/{ids[10 + i]}/$value"}
            for i in range(3)]
    reqs += [{"id": "m1", "method": "POST", "url": f"{U}/messages/{ids[13]}/move",
              "headers": {"Content-Type": "application/json"},
              "body": {"destinationId": folders["Erledigt"]}},
             {"id": "m2", "method": "POST", "url": f"{U}/messages/{ids[14]}/move",
              "dependsOn": ["m1"], "headers": {"Content-Type": "application/json"},
              "body": {"destinationId": folders["Erledigt"]}},
             {"id": "bad", "method": "GET", "url": f"{U}/messages/AAkALgnosuchmessage="},
             {"id": "after-bad", "method": "GET", "url": f"{U}/messages/{ids[15]}",
              "dependsOn": ["bad"]}]
    st, _, body = lab.api("POST", "/$batch", rw, {"requests": reqs}, immutable=True)
    by_id = {r["id"]: r for r in body.get("responses", [])}
    check("$batch: 200 with one response per request", st == 200 and len(by_id) == 7, body)
    check("$batch $value: base64 body with the exact MIME",
          all(by_id[str(i)]["status"] == 200
              and base64.b64decode(by_id[str(i)]["body"]) == mimes[10 + i][0] for i in range(3)))
    check("$batch moves: 201, immutable ids from the outer Prefer",
          by_id["m1"]["status"] == 201 and by_id["m2"]["status"] == 201
          and by_id["m2"]["body"]["id"] == ids[14], by_id.get("m2"))
    check("$batch: a failed item 404, its dependant 424",
          by_id["bad"]["status"] == 404 and by_id["after-bad"]["status"] == 424)
    st, _, body = lab.api("POST", "/$batch", rw, {"requests": [
        {"id": str(i), "method": "GET", "url": f"{U}/mailFolders"} for i in range(21)]})
    check("$batch of 21: 400", st == 400, st)

    # -- throttling
    lab.admin("POST", "/admin/reset-log", {"mailbox": shop})
    lab.admin("POST", "/admin/throttle", {"mailbox": shop, "requests": 2, "retry_after": 3,
                                          "status": 429})
    st1, h1, b1 = lab.api("GET", f"{U}/mailFolders", rw)
    st, _, body = lab.api("POST", "/$batch", rw, {"requests": [
        {"id": "a", "method": "GET", "url": f"{U}/mailFolders/inbox"},
        {"id": "b", "method": "GET", "url": f"{U}/mailFolders/inbox"}]})
    st3, _, _ = lab.api("GET", f"{U}/mailFolders", rw)
    statuses = [r["status"] for r in sorted(body["responses"], key=lambda r: r["id"])]
    check("forced 429 ApplicationThrottled with Retry-After, batch items count one each",
          st1 == 429 and h1.get("Retry-After") == "3" and code_of(b1) == "ApplicationThrottled"
          and statuses == [429, 200] and st3 == 200, (st1, statuses, st3))
    retry = [r for r in body["responses"] if r["status"] == 429][0]
    check("a throttled batch item carries Retry-After", retry["headers"].get("Retry-After") == "3",
          retry)
    lab.admin("POST", "/admin/throttle", {"mailbox": shop, "requests": 1, "retry_after": 1,
                                          "status": 503})
    st, h, body = lab.api("GET", f"{U}/mailFolders", rw)
    check("forced 503 serviceNotAvailable", st == 503 and code_of(body) == "serviceNotAvailable"
          and h.get("Retry-After") == "1", (st, body))
    log = lab.admin("GET", f"/admin/log?mailbox={q(shop)}")
    check("log: the throttled answers with time and Retry-After",
          [(t["status"], t["retry_after"], t["in_batch"]) for t in log["throttled"]]
          == [(429, 3, False), (429, 3, True), (503, 1, False)], log["throttled"])
    check("log: every request, batch items marked",
          [(r["method"], r["status"], r["in_batch"]) for r in log["requests"]]
          == [("GET", 429, False), ("GET", 429, True), ("GET", 200, True), ("GET", 200, False),
              ("GET", 503, False)], log["requests"])
    star = lab.admin("GET", "/admin/log?mailbox=*")
    check('log: the outer $batch under mailbox "*"',
          any(r["path"] == "/$batch" for r in star["requests"]))
    lab.admin("POST", "/admin/latency", {"mailbox": shop, "seconds": 1.0})
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: lab.api("GET", f"{U}/mailFolders/inbox", rw), range(6)))
    lab.admin("POST", "/admin/latency", {"mailbox": shop, "seconds": 0})
    busy = [r for r in results if r[0] == 429]
    check("6 concurrent requests: 4 served, 2 get 429 MailboxConcurrency with Retry-After: 1",
          len(busy) == 2 and all(r[2]["error"]["message"] ==
                                 "Application is over its MailboxConcurrency limit."
                                 and r[1].get("Retry-After") == "1" for r in busy),
          [r[0] for r in results])

    # -- access policy and roles
    lab.admin("POST", "/admin/policy", {"client_id": fenced_id, "mailboxes": [other]})
    st, _, body = lab.api("GET", f"{U}/mailFolders", fenced)
    st_ok, _, _ = lab.api("GET", f"/users/{q(other)}/mailFolders", fenced)
    check("access policy: another mailbox is 403 [RAOP]",
          st == 403 and code_of(body) == "ErrorAccessDenied" and "[RAOP]" in body["error"]["message"]
          and st_ok == 200, (st, st_ok))
    lab.admin("POST", "/admin/policy", {"client_id": fenced_id, "mailboxes": None})
    st, _, _ = lab.api("GET", f"{U}/mailFolders", fenced)
    check("access policy lifted", st == 200, st)
    st_r, _, _ = lab.api("GET", f"{U}/mailFolders/inbox/messages", ro)
    st_w, _, body_w = lab.api("PATCH", f"{U}/messages/{ids[20]}", ro, {"isRead": True})
    st_s, _, body_s = lab.api("POST", f"{U}/sendMail", ro, b64(b"x").encode(),
                              {"Content-Type": "text/plain"})
    check("Mail.Read only: reads, but PATCH and sendMail are 403 ErrorAccessDenied",
          st_r == 200 and st_w == 403 and st_s == 403
          and body_w["error"]["message"] == "Access is denied. Check credentials and try again.",
          (st_r, st_w, st_s))

    # -- sending
    outside = f"someone-{tag}@elsewhere.example"
    data, mid = mime(shop, f"{other}, {dovecot_user}, {outside}", "Re: Order 05",
                     "Thanks for your order.\r\n.leading dot line\r\n")
    st, _, raw = lab.api("POST", f"{U}/sendMail", rw, b64(data).encode(),
                         {"Content-Type": "text/plain"})
    check("sendMail with base64 MIME: 202, empty body", st == 202 and raw == b"", (st, raw))
    inbox = lab.admin("GET", f"/admin/messages?mailbox={q(other)}&folder=inbox")["messages"]
    check("sendMail: a stand-in recipient gets the bytes unchanged",
          [base64.b64decode(m["mime"]) for m in inbox] == [data], len(inbox))
    sent_items = lab.admin("GET", f"/admin/messages?mailbox={q(shop)}&folder=sentitems")["messages"]
    check("sendMail: a copy in the sender's sentitems",
          [base64.b64decode(m["mime"]) for m in sent_items] == [data])
    record = lab.admin("GET", f"/admin/sent?mailbox={q(shop)}")["sent"][-1]
    check("sent record: exact MIME, via sendMail, saved, Postfix took the lab user and refused "
          "the other domain",
          base64.b64decode(record["mime"]) == data and record["via"] == "sendMail"
          and record["saved"] is True and record["smtp"]["accepted"] == [dovecot_user]
          and list(record["smtp"]["refused"]) == [outside], record["smtp"])
    found = imap_find(lab.env, dovecot_user, mid)
    check("sendMail: the Dovecot user of the lab receives it (IMAP)",
          found is not None and b"Thanks for your order." in found
          and b"\n.leading dot line" in found, found and found[:80])
    st, _, body = lab.api("POST", f"{U}/sendMail", rw, b"!!! not base64 !!!",
                          {"Content-Type": "text/plain"})
    check("sendMail with bad base64: 400 ErrorMimeContentInvalidBase64String",
          st == 400 and code_of(body) == "ErrorMimeContentInvalidBase64String"
          and body["error"]["message"] == "Invalid base64 string for MIME content.", body)
    st, _, body = lab.api("POST", f"{U}/sendMail", rw, {"message": {"subject": "json"}})
    check("sendMail with JSON: 400 (MIME only)", st == 400, st)

    # -- drafts
    data2, mid2 = mime(shop, other, "Draft, deleted after submit")
    st, _, draft = lab.api("POST", f"{U}/messages", rw, b64(data2).encode(),
                           {"Content-Type": "text/plain"}, immutable=True)
    check("draft from MIME: 201 in drafts", st == 201 and draft["isDraft"] is True
          and draft["parentFolderId"] == folders["drafts"], draft)
    st, _, _ = lab.api("PATCH", f"{U}/messages/{draft['id']}", rw, {
        "singleValueExtendedProperties": [{"id": "Boolean 0x0E01", "value": "true"}]})
    st2, _, raw = lab.api("POST", f"{U}/messages/{draft['id']}/send", rw)
    drafts = lab.admin("GET", f"/admin/messages?mailbox={q(shop)}&folder=drafts")["messages"]
    sent_items = lab.admin("GET", f"/admin/messages?mailbox={q(shop)}&folder=sentitems")["messages"]
    record = lab.admin("GET", f"/admin/sent?mailbox={q(shop)}")["sent"][-1]
    st3, _, _ = lab.api("GET", f"{U}/messages/{draft['id']}", rw)
    check("send with DeleteAfterSubmit: 202, gone from drafts, not in sentitems, not saved",
          st == 200 and st2 == 202 and drafts == [] and len(sent_items) == 1
          and record["via"] == "send" and record["saved"] is False and st3 == 404,
          (st, st2, len(drafts), len(sent_items), record["saved"], st3))
    inbox = lab.admin("GET", f"/admin/messages?mailbox={q(other)}&folder=inbox")["messages"]
    check("the draft reached the recipient", base64.b64decode(inbox[-1]["mime"]) == data2)
    data3, _ = mime(shop, other, "Draft, kept")
    st, _, draft = lab.api("POST", f"{U}/messages", rw, b64(data3).encode(),
                           {"Content-Type": "text/plain"}, immutable=True)
    lab.api("POST", f"{U}/messages/{draft['id']}/send", rw)
    st, _, body = lab.api("GET", f"{U}/messages/{draft['id']}", rw, immutable=True)
    check("send without it: the draft, same immutable id, is now in sentitems",
          st == 200 and body["parentFolderId"] == folders["sentitems"] and body["isDraft"] is False,
          body)
    st, _, body = lab.api("POST", f"{U}/messages/{ids[20]}/send", rw)
    check("sending a message that is not a draft: 400", st == 400, st)

    print(f"{len(PASSED)} passed, {len(FAILED)} failed")
    return 1 if FAILED else 0


def imap_find(env, user, message_id, wait=15):
    """The raw mail with this Message-ID in user's INBOX (plain IMAP, lab password), or None."""
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            imap = imaplib.IMAP4(env["MAIL_LAB_HOST"], int(env["MAIL_LAB_IMAP_PORT"]))
            try:
                imap.login(user, env["MAIL_LAB_PASSWORD"])
                imap.select("INBOX")
                _, data = imap.search(None, "HEADER", "Message-ID", message_id)
                nums = data[0].split()
                if nums:
                    _, fetched = imap.fetch(nums[0], "(BODY.PEEK[])")
                    return fetched[0][1]
            finally:
                imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
        time.sleep(0.3)
    return None


if __name__ == "__main__":
    sys.exit(main())
