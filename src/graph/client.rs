//! Requests to Microsoft Graph as the app, for one mailbox: the bearer token (renewed once when
//! Graph refuses it), JSON batching, and throttling.
//!
//! Throttling follows <https://learn.microsoft.com/en-us/graph/throttling> and the Outlook limits
//! of <https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits>: a 429
//! or 503 is waited out as its `Retry-After` says, and until then *every* request of the mailbox
//! waits, the poller's and the reply sender's (the limit is per app and mailbox, so the next
//! request would be throttled too); at most
//! [`CONCURRENT_PER_MAILBOX`] requests of one mailbox run at a time. Inside a `$batch` each
//! request is throttled on its own: the throttled ones are sent again once their wait is over.
//!
//! Every id in requests and answers is an immutable id (`Prefer: IdType="ImmutableId"`,
//! <https://learn.microsoft.com/en-us/graph/outlook-immutable-id>): a mail keeps its id when it is
//! moved, so the store's key for it survives the move.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tracing::{debug, info};

use super::error::{envelope, envelope_of, GraphError};
use crate::oauth::{OAuthError, TokenSource};
use crate::secret::Secret;

/// The most requests one `$batch` may carry (<https://learn.microsoft.com/en-us/graph/json-batching>).
pub const BATCH_LIMIT: usize = 20;

/// Outlook's limit of concurrent requests per app and mailbox.
pub const CONCURRENT_PER_MAILBOX: usize = 4;

/// Answers 429/503 to one request (or to the same requests of a batch) before the pass gives up;
/// the next pass starts again.
const THROTTLED_TRIES: u32 = 6;

/// The wait after a 429/503 without `Retry-After` (the reference asks for a back-off then).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The longest `Retry-After` taken as said; longer ones end the pass instead of holding it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The `Prefer` header of every request: immutable ids.
pub const PREFER_IMMUTABLE_IDS: &str = "IdType=\"ImmutableId\"";

/// Characters left as they are in a path segment (RFC 3986 unreserved); everything else is
/// percent-encoded, so an address or an id can never change the path.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One path segment, encoded.
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// The body of a request.
pub enum Body {
    None,
    Json(Value),
    /// A MIME message, sent base64-encoded as `text/plain` (sendMail and drafts in MIME format:
    /// <https://learn.microsoft.com/en-us/graph/outlook-send-mime-message>).
    Mime(Vec<u8>),
}

/// One request of a `$batch`: `url` is relative to the Graph base (`/users/...`).
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub method: &'static str,
    pub url: String,
    pub body: Option<Value>,
}

/// One answer of a `$batch`.
#[derive(Debug, Clone)]
pub struct ItemAnswer {
    pub status: u16,
    pub body: Value,
}

impl ItemAnswer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A non-JSON body (a message's MIME, from `$value`): Graph puts it in the batch answer as a
    /// base64 string. The batching reference shows only JSON bodies; this is what Graph does and
    /// what its SDKs decode.
    pub fn bytes(&self) -> Result<Vec<u8>, GraphError> {
        use base64::Engine;
        let text = self.body.as_str().ok_or_else(|| GraphError::Unexpected {
            what: "a $value request in a $batch".into(),
            detail: "the body is not a base64 string".into(),
        })?;
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| GraphError::Unexpected {
                what: "a $value request in a $batch".into(),
                detail: format!("the body is not base64: {e}"),
            })
    }

    /// The error this answer stands for.
    pub fn error(&self, mailbox: &str) -> GraphError {
        let (code, message) = envelope_of(&self.body);
        GraphError::Api {
            status: self.status,
            code,
            message: message.unwrap_or_default(),
            mailbox: mailbox.to_string(),
        }
    }
}

/// When the mailbox may be asked again, and how many requests run now.
pub struct Gate {
    not_before: Mutex<Option<Instant>>,
    running: Semaphore,
}

/// The gates of the process, one per Graph base and mailbox. Microsoft's limits are per app and
/// mailbox, so the account's poller and the reply sender (which sends from the same mailbox)
/// must wait for each other's 429s: a process-wide table is the one place both reach, and it
/// holds only what is in use (a gate is dropped with its last client).
static GATES: Mutex<Vec<(String, std::sync::Weak<Gate>)>> = Mutex::new(Vec::new());

impl Gate {
    /// The gate of `mailbox` at `base`, shared with every other client of it in this process.
    fn of(base: &str, mailbox: &str) -> Arc<Gate> {
        let key = format!("{base} {}", mailbox.to_lowercase());
        let mut gates = GATES.lock().expect("gates lock");
        gates.retain(|(_, gate)| gate.strong_count() > 0);
        if let Some(gate) = gates
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, g)| g.upgrade())
        {
            return gate;
        }
        let gate = Arc::new(Gate {
            not_before: Mutex::new(None),
            running: Semaphore::new(CONCURRENT_PER_MAILBOX),
        });
        gates.push((key, Arc::downgrade(&gate)));
        gate
    }

    async fn wait(&self) {
        loop {
            let until = *self.not_before.lock().expect("gate lock");
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => return,
            }
        }
    }

    fn hold(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut not_before = self.not_before.lock().expect("gate lock");
        if not_before.is_none_or(|t| t < until) {
            *not_before = Some(until);
        }
    }
}

/// Requests for one mailbox, as the app.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    /// `https://graph.microsoft.com/v1.0`, without a trailing slash.
    base: String,
    mailbox: String,
    tokens: Arc<TokenSource>,
    gate: Arc<Gate>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.base)
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

/// The HTTPS client for Graph: the account's TLS settings (its `ca_file`), no redirects (a
/// redirect could carry the token elsewhere), a deadline per request.
pub fn http_client(
    tls: &rustls::ClientConfig,
    timeout: Duration,
) -> Result<reqwest::Client, GraphError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|e| GraphError::Unreachable {
            host: "(none)".into(),
            detail: format!("cannot set up HTTPS: {e}"),
            timeout: false,
        })
}

impl GraphClient {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        mailbox: &str,
        tokens: Arc<TokenSource>,
    ) -> GraphClient {
        let base = base.trim_end_matches('/').to_string();
        GraphClient {
            gate: Gate::of(&base, mailbox),
            http,
            base,
            mailbox: mailbox.to_string(),
            tokens,
        }
    }

    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    /// `/users/{mailbox}`, encoded: the start of every path of this mailbox.
    pub fn user_path(&self) -> String {
        format!("/users/{}", segment(&self.mailbox))
    }

    /// The absolute URL of a path relative to the base.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The host Graph is at, for messages.
    pub fn host(&self) -> String {
        url::Url::parse(&self.base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| self.base.clone())
    }

    /// GET of a JSON resource; `url` is absolute (a path made with [`GraphClient::url`], or an
    /// `@odata.nextLink` / `@odata.deltaLink` as Graph gave it).
    pub async fn get_json(&self, url: &str) -> Result<Value, GraphError> {
        let bytes = self.call(reqwest::Method::GET, url, Body::None).await?;
        parse_json(&bytes, url)
    }

    /// GET of bytes (a message's MIME, `$value`).
    pub async fn get_bytes(&self, url: &str) -> Result<Vec<u8>, GraphError> {
        self.call(reqwest::Method::GET, url, Body::None).await
    }

    /// A page of a delta round, at most `page` items (`Prefer: odata.maxpagesize`).
    pub async fn get_delta(&self, url: &str, page: usize) -> Result<Value, GraphError> {
        let prefer = format!("{PREFER_IMMUTABLE_IDS}, odata.maxpagesize={page}");
        let bytes = self
            .call_with(reqwest::Method::GET, url, Body::None, &prefer)
            .await?;
        parse_json(&bytes, url)
    }

    /// A request whose answer is JSON or empty (202, 204).
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Body,
    ) -> Result<Value, GraphError> {
        let bytes = self.call(method, url, body).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        parse_json(&bytes, url)
    }

    /// Up to [`BATCH_LIMIT`] requests in one `$batch`; the answers in the order of `items`.
    /// Requests answered 429/503 are sent again (in a batch of their own) once the longest of
    /// their `Retry-After`s is over.
    pub async fn batch(&self, items: &[BatchItem]) -> Result<Vec<ItemAnswer>, GraphError> {
        assert!(
            items.len() <= BATCH_LIMIT,
            "a $batch holds at most 20 requests"
        );
        let mut answers: Vec<Option<ItemAnswer>> = vec![None; items.len()];
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut tries = 0;
        while !pending.is_empty() {
            let requests: Vec<Value> = pending
                .iter()
                .map(|&i| {
                    let item = &items[i];
                    let mut request = json!({
                        "id": i.to_string(),
                        "method": item.method,
                        "url": item.url,
                        "headers": {"Prefer": PREFER_IMMUTABLE_IDS},
                    });
                    if let Some(body) = &item.body {
                        request["body"] = body.clone();
                        request["headers"]["Content-Type"] = json!("application/json");
                    }
                    request
                })
                .collect();
            let url = self.url("/$batch");
            let answer = self
                .send_json(
                    reqwest::Method::POST,
                    &url,
                    Body::Json(json!({ "requests": requests })),
                )
                .await?;
            let responses =
                answer["responses"]
                    .as_array()
                    .ok_or_else(|| GraphError::Unexpected {
                        what: "$batch".into(),
                        detail: "no `responses` array".into(),
                    })?;
            let mut wait: Option<Duration> = None;
            let mut again = Vec::new();
            for response in responses {
                let Some(i) = response["id"]
                    .as_str()
                    .and_then(|id| id.parse::<usize>().ok())
                    .filter(|i| *i < items.len())
                else {
                    continue;
                };
                let status = response["status"].as_u64().unwrap_or(0) as u16;
                if status == 429 || status == 503 {
                    let said = response["headers"]["Retry-After"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| {
                            response["headers"]["Retry-After"]
                                .as_u64()
                                .map(|n| n.to_string())
                        });
                    let this = retry_after(said.as_deref());
                    wait = Some(wait.map_or(this, |w| w.max(this)));
                    again.push(i);
                    continue;
                }
                answers[i] = Some(ItemAnswer {
                    status,
                    body: response.get("body").cloned().unwrap_or(Value::Null),
                });
            }
            // A request the batch answer left out is sent again, as a throttled one.
            for &i in &pending {
                if answers[i].is_none() && !again.contains(&i) {
                    again.push(i);
                }
            }
            pending = again;
            if pending.is_empty() {
                break;
            }
            tries += 1;
            if tries >= THROTTLED_TRIES {
                return Err(GraphError::Throttled {
                    mailbox: self.mailbox.clone(),
                    tries,
                });
            }
            let wait = wait.unwrap_or(DEFAULT_RETRY_AFTER);
            self.throttled(wait);
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("every request answered"))
            .collect())
    }

    /// Holds every request of the mailbox for `wait`.
    fn throttled(&self, wait: Duration) {
        info!(target: "mail2ticket::graph", mailbox = %self.mailbox, retry_after_secs = wait.as_secs_f64(),
            "Microsoft Graph throttles this mailbox: every request of it waits as Retry-After says");
        self.gate.hold(wait);
    }

    /// One request with the token, the throttling gate and one renewal of a refused token.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Body,
    ) -> Result<Vec<u8>, GraphError> {
        self.call_with(method, url, body, PREFER_IMMUTABLE_IDS)
            .await
    }

    async fn call_with(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Body,
        prefer: &str,
    ) -> Result<Vec<u8>, GraphError> {
        let (payload, content_type) = match body {
            Body::None => (None, None),
            Body::Json(v) => (Some(v.to_string().into_bytes()), Some("application/json")),
            Body::Mime(raw) => {
                use base64::Engine;
                let text = base64::engine::general_purpose::STANDARD.encode(raw);
                (Some(text.into_bytes()), Some("text/plain"))
            }
        };
        let mut token = self.tokens.token().await?;
        let mut renewed = false;
        let mut throttled = 0;
        loop {
            self.gate.wait().await;
            let answer = {
                let _running = self.gate.running.acquire().await.expect("gate open");
                self.once(
                    &method,
                    url,
                    &token,
                    payload.as_deref(),
                    content_type,
                    prefer,
                )
                .await?
            };
            let (status, retry, bytes) = answer;
            match status {
                200..=299 => return Ok(bytes),
                401 if !renewed => {
                    debug!(target: "mail2ticket::graph", mailbox = %self.mailbox,
                        "Microsoft Graph refused the cached token: one more try with a new one");
                    token = self.tokens.renew(&token).await?;
                    renewed = true;
                }
                401 => {
                    let (code, message) = envelope(&bytes);
                    return Err(GraphError::Token(OAuthError::MailboxRefused {
                        server: self.host(),
                        user: self.mailbox.clone(),
                        server_text: format!("{code}: {message}"),
                    }));
                }
                429 | 503 => {
                    throttled += 1;
                    if throttled >= THROTTLED_TRIES {
                        return Err(GraphError::Throttled {
                            mailbox: self.mailbox.clone(),
                            tries: throttled,
                        });
                    }
                    self.throttled(retry_after(retry.as_deref()));
                }
                _ => {
                    let (code, message) = envelope(&bytes);
                    return Err(GraphError::Api {
                        status,
                        code,
                        message,
                        mailbox: self.mailbox.clone(),
                    });
                }
            }
        }
    }

    /// One HTTP exchange: status, `Retry-After`, body.
    async fn once(
        &self,
        method: &reqwest::Method,
        url: &str,
        token: &Secret,
        payload: Option<&[u8]>,
        content_type: Option<&str>,
        prefer: &str,
    ) -> Result<(u16, Option<String>, Vec<u8>), GraphError> {
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(token.expose())
            .header("Prefer", prefer);
        if let (Some(payload), Some(content_type)) = (payload, content_type) {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(payload.to_vec());
        } else if *method == reqwest::Method::POST {
            request = request.header(reqwest::header::CONTENT_LENGTH, 0);
        }
        let unreachable = |e: reqwest::Error| GraphError::Unreachable {
            host: self.host(),
            timeout: e.is_timeout(),
            detail: crate::net::error_chain(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response.bytes().await.map_err(unreachable)?.to_vec();
        Ok((status, retry, bytes))
    }
}

fn parse_json(bytes: &[u8], url: &str) -> Result<Value, GraphError> {
    serde_json::from_slice(bytes).map_err(|e| GraphError::Unexpected {
        what: path_of(url),
        detail: format!("not JSON ({e})"),
    })
}

/// A URL's path, for messages (its query may carry a delta token).
fn path_of(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// `Retry-After` in seconds (the form Graph uses), else the default; capped.
fn retry_after(said: Option<&str>) -> Duration {
    said.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_RETRY_AFTER)
        .min(MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_cannot_change_the_path() {
        assert_eq!(segment("support@shop.example"), "support%40shop.example");
        assert_eq!(segment("a/b?c#d"), "a%2Fb%3Fc%23d");
        assert_eq!(segment("AAkALgAA-_x="), "AAkALgAA-_x%3D");
    }

    #[test]
    fn the_clients_of_one_mailbox_share_its_gate() {
        let a = Gate::of("https://graph.example/v1.0", "Support@Shop.example");
        let b = Gate::of("https://graph.example/v1.0", "support@shop.example");
        let other = Gate::of("https://graph.example/v1.0", "returns@shop.example");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &other));
        a.hold(Duration::from_secs(5));
        assert!(
            b.not_before.lock().unwrap().is_some(),
            "a 429 seen by one holds the other"
        );
    }

    #[test]
    fn retry_after_is_taken_in_seconds_and_capped() {
        assert_eq!(retry_after(Some("3")), Duration::from_secs(3));
        assert_eq!(retry_after(None), DEFAULT_RETRY_AFTER);
        assert_eq!(retry_after(Some("soon")), DEFAULT_RETRY_AFTER);
        assert_eq!(retry_after(Some("100000")), MAX_RETRY_AFTER);
    }

    #[test]
    fn a_value_answer_in_a_batch_is_base64() {
        let answer = ItemAnswer {
            status: 200,
            body: json!("RnJvbTogYUBiLmMNCg0KaGk="),
        };
        assert_eq!(answer.bytes().unwrap(), b"From: a@b.c\r\n\r\nhi");
    }
}
