#!/usr/bin/env python3
"""How much longer storing a backlog takes in a grown store than in an empty one, per build.

  scripts/bench.d/store_growth.py [--mails 10000] [--grown 100000] [--rounds 4] [--work DIR]
                                  [EXAMPLES_DIR ...]

For each EXAMPLES_DIR (the release examples of one build; default target/release/examples):
generates a store of --grown articles with that build's examples/find_bench.rs --generate-only,
then, --rounds times and the builds in turn, stores the mixed corpus of scripts/bench
(corpus.py, seed 1) with examples/ingest_profile.rs (batches of 500, as `run --once` commits
them) into an empty store and into a fresh copy of the grown one. Prints the store time (the
sum of ingest_profile's per-kind store time: no parsing, no network) of both, and their ratio,
per round and as medians. Alternating the builds round by round spreads a busy machine's noise
over all of them, so two builds can be compared in one run: build the other one in a worktree,
e.g. `git worktree add ../base HEAD~1 && (cd ../base && cargo build --release --example
find_bench --example ingest_profile)`, then pass both directories.

No mail lab: nothing goes through IMAP.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corpus  # noqa: E402
import labkit  # noqa: E402


def store_seconds(examples, mails, store):
    """Stores `mails` into `store`; returns the store time ingest_profile reports, in seconds."""
    out = subprocess.run([os.path.join(examples, "ingest_profile"), "--mails", mails, "--store", store],
                         check=True, capture_output=True, text=True).stdout
    total = 0.0
    # One line per kind after the header; the last four columns: mails, KB avg, parse µs,
    # store µs (per mail).
    for line in out.splitlines()[1:]:
        cols = line.split()
        total += int(cols[-4]) * float(cols[-1]) / 1e6
    return total


def remove(store):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(store + suffix):
            os.remove(store + suffix)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mails", type=int, default=10000)
    ap.add_argument("--grown", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--work", default="/tmp/m2t-store-growth")
    ap.add_argument("builds", nargs="*", default=[None])
    args = ap.parse_args()
    builds = [labkit.release_examples(b) for b in args.builds]
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    mails = os.path.join(args.work, "mails")
    corpus.write_corpus(mails, args.mails, "support@shop.example", "pw")
    grown = {examples: labkit.generated_store(os.path.join(examples, "find_bench"),
                                              os.path.join(args.work, f"grown-{i}.db"), args.grown)
             for i, examples in enumerate(builds)}
    empty_store = os.path.join(args.work, "empty.db")
    grown_store = os.path.join(args.work, "grown.db")
    times = {examples: [] for examples in builds}
    for r in range(args.rounds):
        for examples in builds:
            remove(empty_store)
            labkit.migrated_empty_store(examples, empty_store)
            remove(grown_store)
            shutil.copyfile(grown[examples], grown_store)
            os.sync()
            empty = store_seconds(examples, mails, empty_store)
            into_grown = store_seconds(examples, mails, grown_store)
            times[examples].append((empty, into_grown))
            print(f"round {r + 1}, {examples}: empty {empty:.2f} s, {args.grown} articles "
                  f"{into_grown:.2f} s, ratio {into_grown / empty:.3f}", flush=True)
    print(f"{args.mails} mails of the mixed corpus, store time (medians of {args.rounds} rounds)")
    for examples in builds:
        empty = statistics.median(e for e, _ in times[examples])
        into_grown = statistics.median(g for _, g in times[examples])
        ratio = statistics.median(g / e for e, g in times[examples])
        print(f"{examples}: empty {empty:.2f} s, {args.grown} articles {into_grown:.2f} s, "
              f"ratio {ratio:.3f} (rounds: {', '.join(f'{g / e:.3f}' for e, g in times[examples])})")


if __name__ == "__main__":
    main()
