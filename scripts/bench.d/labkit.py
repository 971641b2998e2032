"""Shared helpers for scripts/bench and scripts/chaos: the private mail lab, mail generation,
mail2ticket configs, the store, and minimal IMAP/POP3 clients.

Every lab setting comes from the MAIL_LAB_* environment variables (the same ones
scripts/mail-lab reads), so these scripts can run beside a test lab; `defaults()` gives each
script its own lab directory and ports when they are not set.
"""

import imaplib
import os
import poplib
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIL_LAB = os.path.join(REPO, "scripts", "mail-lab")
PORT_KEYS = ["IMAP", "IMAPS", "POP3", "POP3S", "SMTP", "SUBMISSION", "SMTPS"]


def defaults(lab_dir, base_port):
    """Own lab dir and ports unless MAIL_LAB_* says otherwise (base_port+143 = IMAP, ...)."""
    os.environ.setdefault("MAIL_LAB_DIR", lab_dir)
    offsets = {"IMAP": 143, "IMAPS": 993, "POP3": 110, "POP3S": 995, "SMTP": 25,
               "SUBMISSION": 587, "SMTPS": 465}
    for key, off in offsets.items():
        os.environ.setdefault(f"MAIL_LAB_{key}_PORT", str(base_port + off))
    if os.environ["MAIL_LAB_DIR"].rstrip("/") == "/tmp/mail2ticket-lab":
        sys.exit("refusing to use the shared lab /tmp/mail2ticket-lab: set MAIL_LAB_DIR to your own")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Lab:
    def __init__(self):
        self.env = {}

    def up(self):
        out = subprocess.run([MAIL_LAB, "up"], check=True, capture_output=True, text=True).stdout
        self.env = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
        return self

    def down(self):
        subprocess.run([MAIL_LAB, "down"], check=False, capture_output=True)

    def port(self, key):
        return int(self.env[f"MAIL_LAB_{key}_PORT"])

    @property
    def password(self):
        return self.env["MAIL_LAB_PASSWORD"]

    def seed(self, user, folder, files):
        for i in range(0, len(files), 2500):
            subprocess.run([MAIL_LAB, "seed", user, folder] + files[i:i + 2500], check=True,
                           capture_output=True)

    def dovecot_cpu(self):
        """CPU seconds (user + system) this lab's Dovecot has used so far: its master, the
        children it has reaped (the kernel adds their time to the master's) and the children
        still running. The difference across a job is the server's share of the job's CPU."""
        tick = os.sysconf("SC_CLK_TCK")
        pidfile = os.path.join(os.environ["MAIL_LAB_DIR"], "dovecot", "run", "master.pid")
        with open(pidfile) as f:
            master = int(f.read().strip())

        def stat(pid):
            with open(f"/proc/{pid}/stat") as f:
                text = f.read()
            # Fields after the command name, which may hold spaces: state, ppid, ...
            return text[text.rindex(")") + 2:].split()

        def own(fields):
            return sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime

        while True:
            before = own(stat(master))
            children = 0
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) == master:
                    continue
                try:
                    fields = stat(pid)
                except OSError:
                    continue
                if int(fields[1]) == master:
                    children += own(fields)
            # A child reaped during the scan would be missed (or counted twice): scan again.
            if own(stat(master)) == before:
                return (before + children) / tick

    def imap(self, user):
        c = imaplib.IMAP4("127.0.0.1", self.port("IMAP"))
        c.login(user, self.password)
        return c

    def count(self, user, folder):
        c = self.imap(user)
        typ, data = c.select(folder, readonly=True)
        c.logout()
        return int(data[0])

    def message_ids(self, user, folder):
        """Message-IDs of every mail in a folder (one entry per mail, duplicates kept)."""
        c = self.imap(user)
        typ, data = c.select(folder, readonly=True)
        ids = []
        if int(data[0]) > 0:
            typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            for item in data:
                if isinstance(item, tuple):
                    m = re.search(rb"<([^>]*)>", item[1])
                    ids.append(m.group(1).decode() if m else "")
        c.logout()
        return ids


def fresh_user(prefix):
    return f"{prefix}-{os.getpid()}-{time.time_ns() % 10**9:x}@example.test"


LOREM = ("Guten Tag, ich habe am Montag eine Bestellung aufgegeben und bisher keine "
         "Versandbestätigung erhalten. Können Sie bitte nachsehen, wo die Lieferung bleibt? "
         "The parcel tracking page says the label was created but nothing since. ")


def make_mail(i, to, tag, size=4300):
    """A plain customer mail of about `size` bytes with a unique Message-ID."""
    subj = f"Bestellung {i} – Rückfrage" if i % 3 else f"Order question {i}"
    head = (f"From: Kunde {i % 97} <kunde{i % 97}@customer.example.test>\r\n"
            f"To: {to}\r\n"
            f"Subject: =?UTF-8?B?{__import__('base64').b64encode(subj.encode()).decode()}?=\r\n"
            f"Message-ID: <{tag}-{i}@customer.example.test>\r\n"
            "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n")
    body = []
    n = len(head.encode())
    line = 0
    while n < size - 80:
        text = LOREM[(line * 7) % 40:][:72].strip() + f" [{i}.{line}]\r\n"
        body.append(text)
        n += len(text.encode())
        line += 1
    return (head + "".join(body)).encode()


def write_mails(directory, n, to, tag, size=4300):
    os.makedirs(directory, exist_ok=True)
    files = []
    for i in range(n):
        p = os.path.join(directory, f"{i:06d}.eml")
        with open(p, "wb") as f:
            f.write(make_mail(i, to, tag, size))
        files.append(p)
    return files


def big_mail(to, tag, total=25 * 1024 * 1024):
    """One mail of about `total` bytes: text plus several base64 attachments."""
    import base64
    rnd = random.Random(7)
    parts = []
    n_att = 5
    raw_each = int(total / n_att * 0.74)
    for k in range(n_att):
        data = rnd.randbytes(raw_each)
        b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
        parts.append(b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
                     b"filename=\"scan-%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" % k + b64)
    head = (f"From: Big <big@customer.example.test>\r\nTo: {to}\r\nSubject: scans\r\n"
            f"Message-ID: <{tag}@customer.example.test>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nsee the scans\r\n").encode()
    return head + b"".join(parts) + b"--b--\r\n"


def account_toml(lab, name, user, protocol="imap", extra=""):
    port = lab.port("IMAP" if protocol == "imap" else "POP3")
    if protocol == "imap" and "action" not in extra:
        extra += '\naction = "move"\nmove_to = "Archive"\n'
    if protocol == "pop3" and "action" not in extra:
        extra += '\naction = "delete"\n'
    return (f'[[account]]\nname = "{name}"\nemail = "{user}"\nprotocol = "{protocol}"\n'
            f'host = "127.0.0.1"\nport = {port}\nencryption = "none"\nuser = "{user}"\n'
            f'password = "{lab.password}"\nticket_type = "question"\nticket_status = "open"\n{extra}\n')


def write_config(directory, accounts, port_override=None, daemon_extra="", store=None,
                 poll_interval="1s"):
    """A config in `directory`; its store is a SQLite file there, or `store` (a PgSchema).
    `poll_interval` is short by default, so that a daemon's passes follow one another closely."""
    os.makedirs(directory, exist_ok=True)
    if store is None:
        store = os.path.join(directory, "tickets.db")
        store_line = f'path = "{store}"'
    else:
        # In a file, as a deployment keeps it: the URL carries the password.
        url_file = os.path.join(directory, "store.url")
        with open(os.open(url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(store.url)
        store_line = f'url_file = "{url_file}"'
    text = (f'[store]\n{store_line}\n\n[daemon]\npoll_interval = "{poll_interval}"\n'
            f'network_timeout = "20s"\n{daemon_extra}\n\n' + "\n".join(accounts))
    if port_override:
        text = re.sub(r"port = \d+", f"port = {port_override}", text)
    path = os.path.join(directory, "config.toml")
    with open(path, "w") as f:
        f.write(text)
    return path, store


class PgSchema:
    """A store of its own on the lab's PostgreSQL: a fresh schema (as the tests make them), the
    URL mail2ticket gets for it, and psql for reading it (password through the environment,
    never on a command line)."""

    def __init__(self, lab, name):
        base = lab.env["MAIL_LAB_PG_URL"]
        self.name = name
        self.url = f"{base}&options[search_path]={name}"
        parts = urllib.parse.urlsplit(base)
        self._password = urllib.parse.unquote(parts.password or "")
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0] if len(netloc) == 2 else ""
        self._psql_url = urllib.parse.urlunsplit(
            parts._replace(netloc=f"{user}@{netloc[-1]}" if user else netloc[-1]))
        self.sql(f"CREATE SCHEMA {name}", in_schema=False)

    def sql(self, statement, in_schema=True):
        env = dict(os.environ, PGPASSWORD=self._password)
        if in_schema:
            env["PGOPTIONS"] = f"-c search_path={self.name}"
        out = subprocess.run(["psql", self._psql_url, "-XAtq", "-v", "ON_ERROR_STOP=1",
                              "-F", "|", "-c", statement], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"psql: {out.stderr.strip()}")
        return out.stdout.strip()

    def size(self):
        """Bytes of the schema's tables, indexes and TOAST."""
        return int(self.sql("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"))

    def drop(self):
        self.sql(f"DROP SCHEMA {self.name} CASCADE", in_schema=False)


def release_examples(directory=None):
    """The directory of a build's release examples (default: this repository's), or exit saying
    how to build them."""
    directory = os.path.abspath(directory or os.path.join(REPO, "target", "release", "examples"))
    for example in ("find_bench", "ingest_profile"):
        if not os.path.exists(os.path.join(directory, example)):
            sys.exit(f"{directory}/{example} is missing: run "
                     "`cargo build --release --example find_bench --example ingest_profile` first")
    return directory


def generated_store(find_bench, path, articles):
    """Generates a store of `articles` at `path` directly (examples/find_bench.rs
    --generate-only), not through IMAP; returns `path`. The store is left in one file: a
    generator built before `Store::close` checkpointed (FIND_BENCH_BIN may name one) could leave
    up to a few hundred MB in the -wal file, which a copy of the file alone would lose, and a
    copy with it would write into the database inside its timed run."""
    p = subprocess.run([find_bench, "--store", path, "--articles", str(articles), "--generate-only"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"find_bench failed:\n{p.stderr}")
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path


def migrated_empty_store(examples, path):
    """An empty store at `path` with the migrations of the build in `examples` applied
    (ingest_profile over an empty folder of mails), so that a timed run only stores mails."""
    no_mails = path + ".no-mails"
    os.makedirs(no_mails, exist_ok=True)
    subprocess.run([os.path.join(examples, "ingest_profile"), "--mails", no_mails, "--store", path],
                   check=True, stdout=subprocess.DEVNULL)
    os.rmdir(no_mails)


def binary():
    path = os.environ.get("MAIL2TICKET_BIN", os.path.join(REPO, "target", "release", "mail2ticket"))
    if not os.path.exists(path):
        sys.exit(f"{path} missing: run `cargo build --release` first")
    return path


def store_counts(store):
    """(tickets, articles, distinct message ids, processed keys) — read-only."""
    if isinstance(store, PgSchema):
        row = store.sql("SELECT (SELECT COUNT(*) FROM tickets), COUNT(*), COUNT(DISTINCT message_id), "
                        "(SELECT COUNT(*) FROM processed) FROM articles")
        return tuple(int(v) for v in row.split("|"))
    if not os.path.exists(store):
        return (0, 0, 0, 0)
    for _ in range(50):
        try:
            db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
            t = db.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
            a, d = db.execute("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM articles").fetchone()
            p = db.execute("SELECT COUNT(*) FROM processed").fetchone()[0]
            db.close()
            return (t, a, d, p)
        except sqlite3.OperationalError as e:  # schema not created yet, or busy
            if "no such table" in str(e):
                return (0, 0, 0, 0)
            time.sleep(0.05)
    raise RuntimeError("store stays busy")


# ------------------------------------------------------------ the minimal clients (wire limit)

def imap_fetch_all(lab, user):
    """One UID FETCH 1:* BODY.PEEK[] (kept on server). Returns (seconds, mails, bytes)."""
    t0 = time.perf_counter()
    c = lab.imap(user)
    c.select("INBOX")
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
    c.logout()
    dt = time.perf_counter() - t0
    mails = [d for d in data if isinstance(d, tuple)]
    return dt, len(mails), sum(len(m[1]) for m in mails)


def imap_fetch_move_all(lab, user, source, target, batch):
    """One UID FETCH 1:* BODY.PEEK[] of `source`, then UID MOVE to `target` in batches of
    `batch` UIDs, as run --once disposes of its batches. Returns (seconds, mails moved)."""
    t0 = time.perf_counter()
    c = lab.imap(user)
    c.select(source)
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
    uids = [re.search(rb"UID (\d+)", d[0]).group(1) for d in data if isinstance(d, tuple)]
    for i in range(0, len(uids), batch):
        typ, _ = c.uid("MOVE", b",".join(uids[i:i + batch]).decode(), target)
        assert typ == "OK", f"UID MOVE answered {typ}"
    c.logout()
    return time.perf_counter() - t0, len(uids)


def pop3_retr_all(lab, user):
    """A poplib RETR loop over every mail (kept on server)."""
    t0 = time.perf_counter()
    p = poplib.POP3("127.0.0.1", lab.port("POP3"))
    p.user(user)
    p.pass_(lab.password)
    n, _ = p.stat()
    total = 0
    for i in range(1, n + 1):
        resp, lines, octets = p.retr(i)
        total += octets
    p.quit()
    return time.perf_counter() - t0, n, total


def pop3_retr_dele_all(lab, user, window=50):
    """The minimal POP3 client that does what `run --once` does with action = "delete": RETR
    and DELE every mail, QUIT to commit the deletions. Pipelined (RFC 2449 PIPELINING: up to
    `window` RETR+DELE pairs in flight) when the server offers it, else one command at a time."""
    import socket
    t0 = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", lab.port("POP3")))
    f = sock.makefile("rb")

    def line():
        out = f.readline()
        if not out.startswith(b"+OK"):
            raise RuntimeError(f"POP3: {out!r}")
        return out

    def multiline():
        size = 0
        while True:
            data = f.readline()
            if data in (b".\r\n", b".\n"):
                return size
            size += len(data)

    def send(text):
        sock.sendall(text.encode())

    line()
    send("CAPA\r\n")
    line()
    capa = []
    while True:
        data = f.readline()
        if data in (b".\r\n", b".\n"):
            break
        capa.append(data.strip().upper())
    pipelining = b"PIPELINING" in capa
    send(f"USER {user}\r\n")
    line()
    send(f"PASS {lab.password}\r\n")
    line()
    send("STAT\r\n")
    n = int(line().split()[1])
    total, sent, done = 0, 0, 0
    step = window if pipelining else 1
    while done < n:
        while sent < n and sent - done < step:
            sent += 1
            send(f"RETR {sent}\r\nDELE {sent}\r\n")
        line()
        total += multiline()
        line()
        done += 1
    send("QUIT\r\n")
    line()
    sock.close()
    return time.perf_counter() - t0, n, total


def tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)
