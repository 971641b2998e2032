"""Benchmark corpora: what a support mailbox really receives, reproducibly.

`mixed` (the default of scripts/bench) is shaped like a shop's support mail; `uniform` is the
older corpus of identical-looking 4.3 KB plain UTF-8 mails (labkit.make_mail), kept so that old
figures can be compared. Both are deterministic for a given (n, tag, seed).

The mixed corpus, per mail (drawn with a seeded RNG):
  * ~20 % replies to an earlier mail of the same corpus: "Re:"/"AW:" subject, In-Reply-To and
    References, the original quoted below the answer (so they join that mail's ticket);
  * bodies in UTF-8 8-bit (~55 %), ISO-8859-1 8-bit (~15 %), ISO-8859-1 quoted-printable
    (~10 %), UTF-8 quoted-printable (~20 %);
  * subjects RFC 2047 encoded (B for UTF-8, Q for ISO-8859-1) or plain ASCII;
  * ~55 % text/plain only, ~15 % HTML only, ~30 % multipart/alternative;
  * ~8 % a small PDF attachment named with RFC 2231 (filename*=UTF-8''...), ~6 % the same
    signature logo inline (multipart/related): the same bytes in every such mail;
  * about 4 KB on average.
"""

import base64
import os
import quopri
import random
import urllib.parse

ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+_"

GERMAN = ("Guten Tag, ich habe am Montag eine Bestellung aufgegeben und bisher keine "
          "Versandbestätigung erhalten. Können Sie bitte nachsehen, wo die Lieferung bleibt? "
          "Die Rücksendung der defekten Ware habe ich bereits veranlasst. Grüße aus Köln. ")
ENGLISH = ("Hello, the parcel tracking page says the label was created but nothing since. "
           "Could you check whether the order has left your warehouse? Many thanks in advance. ")
SUBJECTS = ["Bestellung {i} – Rückfrage", "Lieferung {i} fehlt", "Rücksendung für Auftrag {i}",
            "Order question {i}", "Invoice {i} wrong address", "Größe tauschen ({i})",
            "Défaut produit {i}", "Umtausch Artikel {i} – dringend"]
NAMES = ["Erika Mustermann", "Jürgen Weiß", "Zoë Lefèvre", "John Smith", "Ana María Núñez",
         "Łukasz Żółw", "Søren Ærø", "Chloé Dubois"]
ATTACH_NAMES = ["Rechnung März {i}.pdf", "Rücksendeschein {i}.pdf", "Foto Schaden {i}.pdf"]
# One small PNG, the same bytes in every mail that carries it (a signature logo).
LOGO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAYAAAAf8/9hAAAAFklEQVR42mP8z8BQz0AEYBxVSF+FAOeyD/H8Cx8/"
    "AAAAAElFTkSuQmCC") * 20

CRLF = "\r\n"


def encode_subject(text, charset):
    if all(ord(c) < 128 for c in text):
        return text
    if charset == "iso-8859-1" and all(ord(c) < 256 for c in text):
        q = quopri.encodestring(text.encode("latin-1"), header=True).decode("ascii")
        return f"=?ISO-8859-1?Q?{q}?="
    return f"=?UTF-8?B?{base64.b64encode(text.encode()).decode()}?="


def encode_name(name):
    if all(ord(c) < 128 for c in name):
        return f'"{name}"'
    return f"=?UTF-8?B?{base64.b64encode(name.encode()).decode()}?="


def body_text(rng, i, size, quoted=None):
    words = (GERMAN if rng.random() < 0.6 else ENGLISH) * 8
    lines, n, k = [], 0, rng.randrange(60)
    while n < size:
        line = words[k % 200:k % 200 + 70].strip() + f" [{i}]"
        lines.append(line)
        n += len(line) + 2
        k += 37
    if quoted:
        lines.append("")
        lines.append("Am 27.11.2026 schrieb der Kundenservice:")
        lines.extend("> " + q for q in quoted[:12])
    return lines


def text_part(lines, charset, cte):
    text = CRLF.join(lines) + CRLF
    if charset == "iso-8859-1":
        data = text.encode("latin-1", errors="replace")
    else:
        data = text.encode()
    if cte == "quoted-printable":
        data = quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    head = f"Content-Type: text/plain; charset={charset}{CRLF}Content-Transfer-Encoding: {cte}{CRLF}{CRLF}"
    return head.encode() + data


def html_part(lines, charset, cte):
    # One paragraph a line: SMTP caps lines at 998 bytes.
    html = "<html><body>" + CRLF + CRLF.join(f"<p>{l}</p>" for l in lines) + CRLF + "</body></html>"
    data = html.encode("latin-1", errors="replace") if charset == "iso-8859-1" else html.encode()
    if cte == "quoted-printable":
        data = quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    head = f"Content-Type: text/html; charset={charset}{CRLF}Content-Transfer-Encoding: {cte}{CRLF}{CRLF}"
    return head.encode() + data + CRLF.encode()


def b64_lines(data):
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def multipart(kind, boundary, parts):
    out = f"Content-Type: multipart/{kind}; boundary=\"{boundary}\"{CRLF}{CRLF}".encode()
    for p in parts:
        out += f"--{boundary}{CRLF}".encode() + p + CRLF.encode()
    return out + f"--{boundary}--{CRLF}".encode()


def message_id(tag, i):
    """A unique Message-ID in one of the shapes real mailers write: mostly random first (Gmail,
    Outlook, Apple Mail and Thunderbird), so that a store's indexes on Message-ID receive new keys
    at random places as they do in real use; a few start with the time. Drawn from its own RNG, so
    the rest of the corpus does not depend on it."""
    r = random.Random(f"{tag}-{i}")
    word = lambda n: "".join(r.choice(ID_CHARS) for _ in range(n))
    shape = r.randrange(10)
    if shape < 4:
        return f"<CA{word(40)}{i}@mail.gmail.com>"
    if shape < 6:
        return f"<AM0PR04MB{word(10)}{i}@AM0PR04MB{word(4)}.eurprd04.prod.outlook.com>"
    if shape < 8:
        return f"<{r.getrandbits(128):032X}-{tag}-{i}@customer{i % 7}.example.test>"
    return f"<202611{1 + i % 28:02d}{i % 24:02d}{i % 60:02d}00.{tag}-{i}@customer{i % 7}.example.test>"


def distinct_sender(tag, i):
    """A sender address of its own for mail i, spread over the alphabet as real senders are (a
    store's indexes on senders then receive new keys at random places). Its own RNG, as for
    message_id."""
    r = random.Random(f"sender-{tag}-{i}")
    name = "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))
    return f"{name}.{i}@mail{r.randrange(5000)}.example.test"


def mixed_mail(rng, i, to, tag, parents, senders="few"):
    """One mail of the mixed corpus; returns (bytes, message_id, subject, lines, is_reply).
    senders: "few" (211 customers writing again and again) or "distinct" (one per mail)."""
    charset, cte = rng.choices([("utf-8", "8bit"), ("iso-8859-1", "8bit"),
                                ("iso-8859-1", "quoted-printable"), ("utf-8", "quoted-printable")],
                               weights=[55, 15, 10, 20])[0]
    name = NAMES[i % len(NAMES)]
    sender = (f"kunde{i % 211}@customer{i % 7}.example.test" if senders == "few"
              else distinct_sender(tag, i))
    msgid = message_id(tag, i)
    reply_to = parents[rng.randrange(len(parents))] if parents and rng.random() < 0.2 else None
    if reply_to:
        p_id, p_subject, p_lines = reply_to
        subject = ("AW: " if rng.random() < 0.5 else "Re: ") + p_subject
        lines = body_text(rng, i, rng.randrange(800, 2000), quoted=p_lines)
    else:
        subject = SUBJECTS[rng.randrange(len(SUBJECTS))].format(i=i)
        lines = body_text(rng, i, rng.randrange(2200, 4800))
    head = [f"From: {encode_name(name)} <{sender}>", f"To: {to}",
            f"Subject: {encode_subject(subject, charset)}", f"Message-ID: {msgid}",
            f"Date: Sat, {1 + i % 28:02d} Nov 2026 {i % 24:02d}:{i % 60:02d}:00 +0100",
            "MIME-Version: 1.0"]
    if reply_to:
        head += [f"In-Reply-To: {reply_to[0]}", f"References: {reply_to[0]}"]
    shape = rng.choices(["plain", "html", "alternative"], weights=[55, 15, 30])[0]
    if shape == "plain":
        body = text_part(lines, charset, cte)
    elif shape == "html":
        body = html_part(lines, charset, cte)
    else:
        half = lines[: max(1, len(lines) // 2)]
        body = multipart("alternative", f"alt-{i}", [text_part(half, charset, cte),
                                                     html_part(half, charset, cte)])
    roll = rng.random()
    if roll < 0.08:
        fname = ATTACH_NAMES[i % len(ATTACH_NAMES)].format(i=i)
        pdf = b"%PDF-1.4\n" + rng.randbytes(rng.randrange(600, 1400)) + b"\n%%EOF\n"
        att = (f"Content-Type: application/pdf{CRLF}Content-Transfer-Encoding: base64{CRLF}"
               f"Content-Disposition: attachment; filename*=UTF-8''{urllib.parse.quote(fname)}"
               f"{CRLF}{CRLF}").encode() + b64_lines(pdf)
        body = multipart("mixed", f"mix-{i}", [body, att])
    elif roll < 0.14:
        logo = (f"Content-Type: image/png{CRLF}Content-Transfer-Encoding: base64{CRLF}"
                f"Content-ID: <logo@customer.example.test>{CRLF}"
                f"Content-Disposition: inline; filename=\"logo.png\"{CRLF}{CRLF}").encode() + b64_lines(LOGO)
        body = multipart("related", f"rel-{i}", [body, logo])
    raw = (CRLF.join(head) + CRLF).encode() + body
    return raw, msgid, subject, lines, reply_to is not None


def write_corpus(directory, n, to, tag, kind="mixed", seed=1, senders="few"):
    """Writes n .eml files; returns (paths, expected tickets, total bytes). senders: see
    mixed_mail."""
    import labkit
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(f"{seed}-{n}")
    files, parents, replies, total = [], [], 0, 0
    for i in range(n):
        if kind == "uniform":
            raw = labkit.make_mail(i, to, tag)
        else:
            raw, msgid, subject, lines, is_reply = mixed_mail(rng, i, to, tag, parents, senders)
            replies += is_reply
            parents.append((msgid, subject, lines))
        p = os.path.join(directory, f"{i:06d}.eml")
        with open(p, "wb") as f:
            f.write(raw)
        total += len(raw)
        files.append(p)
    return files, n - replies, total
