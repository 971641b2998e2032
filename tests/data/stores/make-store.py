#!/usr/bin/env python3
"""Writes a ticket store the way a given build of mail2ticket writes it, for the tests that check
that stores written by an earlier version keep working (migrations, source keys, raw mail).

    cargo build          # a debug build: the quarantine below uses its test-only panic hook
    tests/data/stores/make-store.py OUT.sqlite

Against a private mail lab (MAIL_LAB_* as for scripts/mail-lab; default /tmp/m2t-store-lab, ports
25xxx) it runs `mail2ticket run --once` over:
  - an IMAP account (action = move) with 40 mails of the bench's mixed corpus (replies by
    In-Reply-To, ISO-8859-1 and UTF-8, quoted-printable, HTML, PDF and inline image attachments),
    three mails from a lab address (their automatic replies are delivered), then a customer reply
    carrying the first ticket's subject tag;
  - a POP3 account (action = delete) with 12 mixed mails;
  - one IMAP mail that fails three times (MAIL2TICKET_TEST_PANIC_SUBJECT) and is quarantined.
The store is checkpointed (no -wal file) and written to OUT.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(REPO, "scripts", "bench.d"))
import corpus  # noqa: E402
import labkit  # noqa: E402

PANIC_SUBJECT = "fixture mail that always fails"


def plain_mail(to, i, subject, sender="fixture-customer@example.test"):
    return (f"From: Fixture Kundin <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <fixture-{i}-{time.time_ns()}@example.test>\r\n"
            "Date: Mon, 30 Nov 2026 08:00:00 +0100\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            f"Guten Tag, Frage Nummer {i}: wo bleibt meine Lieferung? Grüße\r\n").encode()


def write(directory, name, raw):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(raw)
    return path


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = os.path.abspath(sys.argv[1])
    labkit.defaults("/tmp/m2t-store-lab", 25000)
    binary = os.environ.get("MAIL2TICKET_BIN", os.path.join(REPO, "target", "debug", "mail2ticket"))
    lab = labkit.Lab().up()
    try:
        work = labkit.tmpdir("m2t-store-")
        imap_user = labkit.fresh_user("fixture-imap")
        pop_user = labkit.fresh_user("fixture-pop")
        files, _, _ = corpus.write_corpus(os.path.join(work, "imap"), 40, imap_user, "fixture-imap")
        files += [write(work, f"plain-{i}.eml", plain_mail(imap_user, i, f"Lieferung {i}"))
                  for i in range(3)]
        lab.seed(imap_user, "INBOX", files)
        pop_files, _, _ = corpus.write_corpus(os.path.join(work, "pop"), 12, pop_user, "fixture-pop",
                                              seed=2)
        lab.seed(pop_user, "INBOX", pop_files)

        smtp = (f'[smtp]\nhost = "127.0.0.1"\nport = {lab.port("SMTP")}\nencryption = "none"\n'
                'timeout = "20s"\n')
        reply = ('sender_name = "Fixture Support"\nreply_to = "{u}"\nauto_reply = true\n')
        accounts = [
            labkit.account_toml(lab, "fixture-imap", imap_user, "imap",
                                reply.format(u=imap_user)),
            labkit.account_toml(lab, "fixture-pop", pop_user, "pop3", reply.format(u=pop_user)),
        ]
        config, store = labkit.write_config(work, [smtp] + accounts)

        def run(env=None):
            e = dict(os.environ, **(env or {}))
            subprocess.run([binary, "--config", config, "run", "--once"], env=e, check=False,
                           capture_output=True)

        run()
        db = sqlite3.connect(store)
        number = db.execute("SELECT number FROM tickets WHERE customer_email = "
                            "'fixture-customer@example.test' ORDER BY id LIMIT 1").fetchone()[0]
        db.close()
        lab.seed(imap_user, "INBOX", [
            write(work, "tag-reply.eml", plain_mail(imap_user, 99, f"AW: [Ticket#{number}] Lieferung 0")),
            write(work, "panic.eml", plain_mail(imap_user, 100, PANIC_SUBJECT)),
        ])
        for _ in range(3):
            run({"MAIL2TICKET_TEST_PANIC_SUBJECT": PANIC_SUBJECT})
        run()

        db = sqlite3.connect(store)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode = DELETE")
        db.execute("VACUUM")
        db.close()
        shutil.copyfile(store, out)
        t, a, _, p = labkit.store_counts(out)
        labkit.log(f"{out}: {t} tickets, {a} articles, {p} processed keys")
    finally:
        lab.down()


if __name__ == "__main__":
    main()
