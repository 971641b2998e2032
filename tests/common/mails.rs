//! Varied customer mails for the lab tests: plain, UTF-8 and ISO-8859-1 German, RFC 2047 subjects,
//! HTML-only, attachments with non-ASCII names, replies to unknown threads, a dot-leading line.

pub struct TestMail {
    pub raw: Vec<u8>,
    /// The subject as a ticket should show it after decoding.
    pub subject: String,
    pub message_id: String,
}

fn header(from: &str, to: &str, subject_raw: &str, id: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject_raw}\r\nMessage-ID: <{id}>\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    )
}

/// The `i`-th of a family of varied mails (cycles through seven kinds).
pub fn varied(i: usize, to: &str, tag: &str) -> TestMail {
    let id = format!("m{i}.{tag}@customer.example.test");
    let from = "Kunde <customer@example.test>";
    let (raw, subject): (Vec<u8>, String) = match i % 7 {
        0 => {
            let s = format!("Order question {i}");
            let mut r = header(from, to, &s, &id).into_bytes();
            r.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello,\r\nwhere is my order?\r\n.leading dot line\r\n");
            (r, s)
        }
        1 => {
            let s = format!("Rückfrage zur Lieferung {i}");
            let mut r = header(
                from,
                to,
                &format!("=?UTF-8?Q?R=C3=BCckfrage_zur_Lieferung_{i}?="),
                &id,
            )
            .into_bytes();
            r.extend_from_slice("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln, die Ware ist beschädigt.\r\n".as_bytes());
            (r, s)
        }
        2 => {
            let s = format!("Größe falsch {i}");
            let mut r = header(
                from,
                to,
                &format!("=?ISO-8859-1?Q?Gr=F6=DFe_falsch_{i}?="),
                &id,
            )
            .into_bytes();
            r.extend_from_slice(b"Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nDie Schuhe sind zu gro\xdf. Gr\xfc\xdfe\r\n");
            (r, s)
        }
        3 => {
            let s = format!("Ärger mit Rechnung {i}");
            let b64 = base64_encode(s.as_bytes());
            let mut r = header(from, to, &format!("=?UTF-8?B?{b64}?="), &id).into_bytes();
            r.extend_from_slice(b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Die <b>Rechnung</b> ist falsch.</p></body></html>\r\n");
            (r, s)
        }
        4 => {
            let s = format!("Foto vom Schaden {i}");
            let mut r = header(from, to, &s, &id).into_bytes();
            r.extend_from_slice(
                b"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsiehe Anhang\r\n\
--XYZ\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename*=UTF-8''Sch%C3%A4den%20%C3%BCbersicht.png\r\n\
Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--XYZ--\r\n",
            );
            (r, s)
        }
        5 => {
            let s = format!("Re: Ihre Bestellung {i}");
            let mut r = header(from, to, &s, &id).into_bytes();
            r.extend_from_slice(format!("In-Reply-To: <unknown-{i}@shop.example.test>\r\nReferences: <unknown-{i}@shop.example.test>\r\nContent-Type: text/plain\r\n\r\n> earlier text\r\nmy answer\r\n").as_bytes());
            (r, s)
        }
        _ => {
            let s = format!("multipart alternative {i}");
            let mut r = header(from, to, &s, &id).into_bytes();
            r.extend_from_slice(b"Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain part\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html part</p>\r\n--alt--\r\n");
            (r, s)
        }
    };
    TestMail {
        raw,
        subject,
        message_id: id,
    }
}

pub fn simple(to: &str, subject: &str, id: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "From: Kunde <customer@example.test>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n{extra_headers}Content-Type: text/plain; charset=utf-8\r\n\r\nBody of {subject}\r\n"
    )
    .into_bytes()
}

/// A customer's mail dated now, from `from` (a lab mailbox, so an automatic reply reaches it),
/// with a photo of `photo_bytes` bytes attached (base64, so the mail is a third larger).
pub fn with_photo(from: &str, to: &str, subject: &str, id: &str, photo_bytes: usize) -> Vec<u8> {
    let photo: Vec<u8> = (0..photo_bytes).map(|i| (i * 7 % 251) as u8).collect();
    let lines: Vec<String> = base64_encode(&photo)
        .as_bytes()
        .chunks(76)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    format!(
        "From: Kunde <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDas Paket kam beschädigt an, Foto anbei.\r\n\
         --b1\r\nContent-Type: image/jpeg; name=\"paket.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"paket.jpg\"\r\n\r\n{}\r\n--b1--\r\n",
        chrono::Utc::now().to_rfc2822(),
        lines.join("\r\n")
    )
    .into_bytes()
}

/// A mail from `from` written `days_ago` days before now (its Date header), or without a Date.
pub fn dated(from: &str, to: &str, subject: &str, days_ago: Option<i64>) -> Vec<u8> {
    let date = days_ago
        .map(|d| {
            let written = chrono::Utc::now() - chrono::Duration::days(d);
            format!("Date: {}\r\n", written.to_rfc2822())
        })
        .unwrap_or_default();
    let id = subject.replace(' ', ".");
    format!(
        "From: Kunde <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Message-ID: <{id}@customer.example.test>\r\n{date}Content-Type: text/plain; \
         charset=utf-8\r\n\r\nBody of {subject}\r\n"
    )
    .into_bytes()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
