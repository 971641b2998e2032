#!/usr/bin/env python3
"""Which of the store's B-trees a backlog writes, into an empty store and into a grown one.

  scripts/bench.d/pages_written.py [--mails 10000] [--grown 100000] [--senders few|distinct]
                                   [--sql SQL] [--work DIR]

Writes the mixed corpus of scripts/bench (corpus.py, seed 1) as .eml files, generates a store of
--grown articles (examples/find_bench.rs --generate-only, not through IMAP), and stores the
corpus with examples/ingest_profile.rs (batches of 500, as `run --once` commits them) once into
an empty store and once into the grown one, each under strace. Every page SQLite
writes is counted against the B-tree that owns it (SQLite's `dbstat` table, read after the
run): the frames each commit appends to the WAL, and the pages the checkpoints write into the
database file. A page changed by several commits is one WAL frame per commit. --senders
distinct: every mail from a sender of its own (corpus.py), not the 211 customers of scripts/bench.
--sql: statements run on both stores before the runs, to try another index (an index no lookup
can use makes the run slow, not its writes wrong).

Needs strace and the release examples: cargo build --release --example find_bench
--example ingest_profile. No mail lab: nothing goes through IMAP.
"""

import argparse
import collections
import os
import re
import shutil
import sqlite3
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corpus  # noqa: E402
import labkit  # noqa: E402

EXAMPLES = os.path.join(labkit.REPO, "target", "release", "examples")
# strace prints a write's buffer as \xNN escapes (-xx), the first 32 bytes of it (-s 32): enough
# for the 24-byte header of a WAL frame, whose first 4 bytes are the page number (big-endian).
OPEN = re.compile(r'openat\(AT_FDCWD, "([^"]+)".*= (\d+)$')
PWRITE = re.compile(r'pwrite64\((\d+), "([^"]*)"\.*, (\d+), (\d+)\) = ')
WAL_FRAME_HEADER = 24


def unescape(text):
    return bytes.fromhex(text.replace("\\x", ""))


def page_size(store):
    db = sqlite3.connect(store)
    (size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    return size


def pages_written(store, mails, trace):
    """Runs ingest_profile under strace; returns (WAL frames, checkpoint pages) per page number."""
    size_of_page = page_size(store)
    subprocess.run(["strace", "-f", "-xx", "-s", "32", "-e", "trace=openat,pwrite64", "-o", trace,
                    os.path.join(EXAMPLES, "ingest_profile"), "--mails", mails, "--store", store],
                   check=True, stdout=subprocess.DEVNULL)
    files, wal, db = {}, collections.Counter(), collections.Counter()
    for line in open(trace):
        if m := OPEN.search(line):
            files[m.group(2)] = unescape(m.group(1)).decode()
        elif m := PWRITE.search(line):
            fd, head, size, offset = m.groups()
            name = files.get(fd, "")
            if name.endswith("-wal") and int(size) == WAL_FRAME_HEADER:
                wal[int.from_bytes(unescape(head)[:4], "big")] += 1
            elif name == store:
                db[int(offset) // size_of_page + 1] += 1
    return wal, db


def by_btree(store, pages):
    db = sqlite3.connect(store)
    owner = dict(db.execute("SELECT pageno, name FROM dbstat"))
    db.close()
    out = collections.Counter()
    for page, n in pages.items():
        out[owner.get(page, "(freed)")] += n
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mails", type=int, default=10000)
    ap.add_argument("--grown", type=int, default=100000)
    ap.add_argument("--senders", choices=["few", "distinct"], default="few")
    ap.add_argument("--sql")
    ap.add_argument("--work", default="/tmp/m2t-pages-written")
    args = ap.parse_args()
    if not shutil.which("strace"):
        sys.exit("strace is missing: apt-get install strace")
    labkit.release_examples(EXAMPLES)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    mails = os.path.join(args.work, "mails")
    corpus.write_corpus(mails, args.mails, "support@shop.example", "pw", senders=args.senders)
    grown = labkit.generated_store(os.path.join(EXAMPLES, "find_bench"),
                                   os.path.join(args.work, "grown.db"), args.grown)
    empty = os.path.join(args.work, "empty.db")
    labkit.migrated_empty_store(EXAMPLES, empty)
    if args.sql:
        for store in (empty, grown):
            db = sqlite3.connect(store)
            db.executescript(args.sql)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()
    os.sync()
    results = {}
    for name, store in (("empty", empty), (f"{args.grown} articles", grown)):
        wal, db = pages_written(store, mails, os.path.join(args.work, "strace.txt"))
        results[name] = (by_btree(store, wal), by_btree(store, db))
    names = list(results)
    btrees = sorted(set().union(*(w for w, _ in results.values())),
                    key=lambda b: -results[names[1]][0][b])
    print(f"{args.mails} mails of the mixed corpus ({args.senders} senders); "
          "pages written: WAL frames / checkpoint pages")
    print(f"{'b-tree':<36}" + "".join(f"{n:>24}" for n in names) + f"{'frames added':>16}")
    for b in btrees + ["total"]:
        cells = []
        for n in names:
            w, d = results[n]
            cells.append((sum(w.values()), sum(d.values())) if b == "total" else (w[b], d[b]))
        print(f"{b:<36}" + "".join(f"{w:>16} / {d:<5}" for w, d in cells) + f"{cells[1][0] - cells[0][0]:>+16}")


if __name__ == "__main__":
    main()
