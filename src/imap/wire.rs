//! The byte stream under async-imap, made tolerant of untagged responses its parser does not
//! know (`* 1 EXPUNGED`, `*  1 EXISTS`, `* FOO bar`). async-imap closes the connection for good
//! on any response imap-proto cannot parse and offers no way to skip one, so this adapter,
//! written by hand, sits between it and the socket: it cuts the incoming bytes into whole
//! responses, parses each, and drops an untagged one that does not parse, as robust
//! clients ignore what they do not understand. Every command is still judged by its tagged
//! OK/NO/BAD: a tagged line or a continuation (`+`) is always passed on, parsable or not, so a
//! status is never hidden. A dropped response is not replaced by a stand-in (one would cut an
//! AUTHENTICATE exchange short).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use async_imap::imap_proto::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::{debug, trace, warn};

use crate::net::MailStream;

/// A signed-in session over the tolerant stream.
pub type ImapSession = async_imap::Session<Tolerant<MailStream>>;

/// No response may be larger: async-imap's own limit (a FETCH of a 50 MB mail fits easily).
const MAX_RESPONSE: usize = 512 * 1024 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// A buffer grown beyond this by a big mail is given back once it is empty.
const KEEP_CAPACITY: usize = 1024 * 1024;
/// At most this much of a skipped response's first line is logged (never its literals, which
/// may hold mail).
const SHOWN: usize = 200;

/// See the module documentation. Writes pass straight through.
pub struct Tolerant<S> {
    inner: S,
    /// Bytes read from `inner` are `buf[head..end]` (those before `head` are handed on or
    /// dropped); the rest is room for the next read, kept zeroed so it is not zeroed every read.
    buf: Vec<u8>,
    head: usize,
    end: usize,
    /// Bytes from `head` on that are judged and wait to be handed on.
    passable: usize,
    /// How far framing the response at `head` got (used while `passable` is 0).
    scan: Scan,
    eof: bool,
    /// Untagged responses dropped on this connection.
    skipped: u64,
}

/// Where framing stopped, so that a response arriving in many chunks (a big literal) is scanned
/// once, not again with every chunk. Offsets count from the response's first byte.
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    /// Start of the line being framed (after any literal before it).
    line: usize,
    /// The next byte to look at for that line's end; beyond the buffered bytes while a literal
    /// is still arriving.
    next: usize,
}

impl<S> Tolerant<S> {
    pub fn new(inner: S) -> Tolerant<S> {
        Tolerant {
            inner,
            buf: Vec::new(),
            head: 0,
            end: 0,
            passable: 0,
            scan: Scan::default(),
            eof: false,
            skipped: 0,
        }
    }

    /// The end of the first complete response in `buf[head..]`, if it is all there: a line, and
    /// where it ends in a literal's `{n}`, the n bytes (never looked into) and the next line.
    fn frame_end(&mut self) -> Option<usize> {
        let data = &self.buf[self.head..self.end];
        loop {
            let scan = &mut self.scan;
            if scan.next > data.len() {
                return None;
            }
            let Some(lf) = data[scan.next..].iter().position(|b| *b == b'\n') else {
                scan.next = data.len();
                return None;
            };
            let end = scan.next + lf + 1;
            match literal_len(&data[scan.line..end]) {
                // Only untagged responses carry literals, and not all that end in braces:
                // `* OK text {3}` is complete (resp-text ends at the line). The parser knows.
                Some(n) if data.starts_with(b"*") && Response::parse(&data[..end]).is_err() => {
                    scan.line = end.saturating_add(n);
                    scan.next = scan.line;
                }
                _ => {
                    self.scan = Scan::default();
                    return Some(end);
                }
            }
        }
    }

    /// Decides about the complete response `buf[head..head + end]`: hand it on, or drop it.
    fn judge(&mut self, end: usize) {
        let frame = &self.buf[self.head..self.head + end];
        let passable = match Response::parse(frame) {
            // A frame holding more than one response: the rest is framed again afterwards.
            Ok((rest, _)) if rest.len() < end => end - rest.len(),
            Ok(_) => end,
            Err(e) if e.is_incomplete() => end,
            Err(_) if frame.starts_with(b"*") => 0,
            // Tagged or continuation: async-imap must see it, and fails as it would have.
            Err(_) => end,
        };
        if passable == 0 {
            self.skip(end);
        } else {
            self.passable = passable;
        }
    }

    fn skip(&mut self, end: usize) {
        let frame = &self.buf[self.head..self.head + end];
        let line = frame.split(|b| *b == b'\n').next().unwrap_or_default();
        let shown = String::from_utf8_lossy(&line[..line.len().min(SHOWN)]);
        let shown = shown.trim_end();
        if is_fetch_response(line) {
            // The one kind whose loss is not harmless: a mail the server sends in a form we
            // cannot read is not fetched, and stays on the server pass after pass.
            warn!(response = ?shown, "skipped a FETCH response the IMAP parser cannot read: \
                that mail is not fetched and stays on the server; please report the line");
        } else if self.skipped == 0 {
            debug!(response = ?shown, "skipped an untagged IMAP response the parser does not know \
                (later ones on this connection are logged at trace level)");
        } else {
            trace!(response = ?shown, "skipped an untagged IMAP response the parser does not know");
        }
        self.skipped += 1;
        self.head += end;
        self.compact();
    }

    /// Forgets the bytes before `head` when that is cheap, and gives back a big buffer.
    fn compact(&mut self) {
        if self.head == self.end {
            (self.head, self.end) = (0, 0);
            if self.buf.len() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        } else if self.head >= READ_CHUNK && self.head >= self.end / 2 {
            self.buf.copy_within(self.head..self.end, 0);
            (self.head, self.end) = (0, self.end - self.head);
        }
    }
}

impl<S: AsyncRead + Unpin> Tolerant<S> {
    /// Reads once from `inner` into the buffer; marks the end of the stream.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.len() - self.end < READ_CHUNK {
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        let mut read = ReadBuf::new(&mut self.buf[self.end..]);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.end += n;
        self.eof = n == 0;
        Poll::Ready(Ok(()))
    }
}

/// The length of the literal announced at the end of `line` (`{n}`, `{n+}`, `~{n}`), if any.
fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let line = line.strip_suffix(b"+").unwrap_or(line);
    let digits = line.len() - line.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == line.len() || !line[..digits].ends_with(b"{") {
        return None;
    }
    std::str::from_utf8(&line[digits..]).ok()?.parse().ok()
}

impl<S: AsyncRead + Unpin> AsyncRead for Tolerant<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.passable > 0 {
                let n = this.passable.min(out.remaining());
                out.put_slice(&this.buf[this.head..this.head + n]);
                this.head += n;
                this.passable -= n;
                this.compact();
                return Poll::Ready(Ok(()));
            }
            if let Some(end) = this.frame_end() {
                this.judge(end);
                continue;
            }
            let waiting = this.end - this.head;
            if this.eof {
                // A response cut off by the end of the stream goes on as it is: async-imap
                // reports it. With nothing left, this is the end.
                if waiting == 0 {
                    return Poll::Ready(Ok(()));
                }
                this.passable = waiting;
                continue;
            }
            if waiting >= MAX_RESPONSE {
                return Poll::Ready(Err(io::Error::other(format!(
                    "an IMAP response larger than {} MiB",
                    MAX_RESPONSE >> 20
                ))));
            }
            ready!(this.fill(cx))?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tolerant<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Sizes only: the buffer holds mail and, during login, AUTHENTICATE exchanges.
impl<S> fmt::Debug for Tolerant<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tolerant")
            .field("buffered", &(self.end - self.head))
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// Whether an untagged line is `* <number> FETCH ...` (any case, any spacing).
fn is_fetch_response(line: &[u8]) -> bool {
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    words.next() == Some(b"*")
        && words
            .next()
            .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
        && words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(b"FETCH"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `data` `step` bytes per read, saying "not yet" before each read, as a socket does.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
        ready: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.ready = !this.ready;
            if !this.ready {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = this
                .step
                .min(this.data.len() - this.at)
                .min(out.remaining());
            out.put_slice(&this.data[this.at..this.at + n]);
            this.at += n;
            Poll::Ready(Ok(()))
        }
    }

    /// What async-imap gets when the server sends `data`, at once and one byte per read.
    async fn received(data: &[u8]) -> Vec<u8> {
        let mut outputs = Vec::new();
        for step in [usize::MAX, 1] {
            let mut stream = Tolerant::new(Trickle {
                data: data.to_vec(),
                at: 0,
                step,
                ready: false,
            });
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await.unwrap();
            outputs.push(got);
        }
        assert_eq!(outputs[0], outputs[1], "chunked delivery changes nothing");
        outputs.pop().unwrap()
    }

    #[tokio::test]
    async fn drops_an_untagged_line_the_parser_does_not_know() {
        let got = received(b"* 1 EXPUNGED\r\nA1 OK done\r\n").await;
        assert_eq!(got, b"A1 OK done\r\n");
        let odd = b"*  1 EXISTS\r\n* FOO {5}\r\n(x y)\r\n* 1 expunge\r\n* ok [UIDVALIDITY 3] x\r\nA2 OK .\r\n";
        assert_eq!(
            received(odd).await,
            b"* 1 expunge\r\n* ok [UIDVALIDITY 3] x\r\nA2 OK .\r\n",
            "lower case parses and is kept"
        );
    }

    #[tokio::test]
    async fn a_literal_is_passed_on_byte_exact_whatever_it_holds() {
        // Big enough for the buffer to grow and be compacted on the way.
        let mut mail = b"Subject: x\r\n\r\n".repeat(10_000);
        mail.extend_from_slice(b"* FOO\r\nA1 OK fake\r\n{5}\r\n");
        let mut fetch = format!("* 1 FETCH (UID 7 BODY[] {{{}}}\r\n", mail.len()).into_bytes();
        fetch.extend_from_slice(&mail);
        fetch.extend_from_slice(b")\r\n");
        let mut wire = fetch.clone();
        wire.extend_from_slice(b"* FOO bar\r\n");
        wire.extend_from_slice(&fetch);
        wire.extend_from_slice(b"A1 OK done\r\n");
        let mut expected = fetch.clone();
        expected.extend_from_slice(&fetch);
        expected.extend_from_slice(b"A1 OK done\r\n");
        assert_eq!(received(&wire).await, expected);
    }

    /// What the first read gets while the server, having sent `data`, waits for the client.
    async fn first_read_while_the_server_waits(data: &[u8]) -> Vec<u8> {
        let (mut server, client) = tokio::io::duplex(1024);
        server.write_all(data).await.unwrap();
        let mut stream = Tolerant::new(client);
        let mut got = vec![0u8; 1024];
        // A deadline against hanging, not a speed requirement.
        let read = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut got));
        let n = read
            .await
            .expect("held back, waiting for a literal")
            .unwrap();
        got.truncate(n);
        got
    }

    #[tokio::test]
    async fn braces_at_the_end_of_status_text_are_no_literal() {
        let wire = b"* OK text {3}\r\nA1 OK done {5}\r\n";
        assert_eq!(received(wire).await, wire);
        let status = b"* OK text {3}\r\n";
        assert_eq!(first_read_while_the_server_waits(status).await, status);
    }

    #[tokio::test]
    async fn a_tagged_line_that_does_not_parse_is_passed_on() {
        let wire = b"* 1 EXPUNGED\r\nA1 MAYBE what {3}\r\n+ \r\n";
        assert_eq!(received(wire).await, b"A1 MAYBE what {3}\r\n+ \r\n");
        let tagged = b"A1 MAYBE what {3}\r\n";
        assert_eq!(first_read_while_the_server_waits(tagged).await, tagged);
    }

    #[tokio::test]
    async fn a_response_cut_off_by_the_end_of_the_stream_is_passed_on() {
        let wire = b"* 1 FETCH (BODY[] {100}\r\nshort";
        assert_eq!(received(wire).await, wire);
    }

    #[test]
    fn literal_announcements_are_recognised() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {42}\r\n"), Some(42));
        assert_eq!(literal_len(b"A1 APPEND x {7+}\r\n"), Some(7));
        assert_eq!(literal_len(b"* 1 FETCH (BINARY[] ~{3}\r\n"), Some(3));
        assert_eq!(literal_len(b"* OK {}\r\n"), None);
        assert_eq!(literal_len(b"* OK 5}\r\n"), None);
        assert_eq!(literal_len(b"* OK {5}"), None);
    }

    #[test]
    fn the_debug_form_shows_no_bytes() {
        let mut stream = Tolerant::new(());
        stream.buf = b"A1 AUTHENTICATE PLAIN c2VjcmV0".to_vec();
        stream.end = stream.buf.len();
        let shown = format!("{stream:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }

    #[test]
    fn a_fetch_response_is_told_from_other_untagged_lines() {
        assert!(is_fetch_response(b"* 3 FETCH (X-ODD (a (b)) UID 5)\r\n"));
        assert!(is_fetch_response(b"*  3 fetch (UID 5)"));
        for other in [
            &b"* 3 EXPUNGED\r\n"[..],
            b"* FOO bar",
            b"* FETCH 3",
            b"A1 OK FETCH",
        ] {
            assert!(
                !is_fetch_response(other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
