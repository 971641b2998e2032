//! `/tickets?q=WORDS`: the search of `tickets find`, and a read-only view of a ticket with its
//! articles, each raw mail as a .eml download and its attachments.
//!
//! Everything here came from mail: maud escapes it in the page, and downloads are always sent
//! as `application/octet-stream` attachments, so an HTML attachment is never rendered in this
//! page's origin (where it could read the account settings).

use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::lang::Lang;
use super::layout::page;
use super::overview::urlencode;
use super::session::Session;
use super::Web;
use crate::store::{FindQuery, Sender};

#[derive(Deserialize)]
pub struct SearchParams {
    #[serde(default)]
    q: String,
}

pub async fn search(
    State(web): State<Web>,
    Extension(lang): Extension<Lang>,
    Extension(session): Extension<Session>,
    Query(params): Query<SearchParams>,
) -> Markup {
    let t = lang.t();
    let q = params.q.trim().to_string();
    let hits = if q.is_empty() {
        None
    } else {
        Some(web.store.find_articles(&query_for(&q)).await)
    };
    let content = html! {
        h1 { (t.find_mail) }
        form.search method="get" action="/tickets" {
            input #q type="search" name="q" value=(q) autofocus;
            button type="submit" { (t.search) }
        }
        @match &hits {
            None => {}
            Some(Err(e)) => p.problem role="alert" { (e.to_string()) },
            Some(Ok(hits)) if hits.is_empty() => p { (t.no_results) },
            Some(Ok(hits)) => table.hits {
                thead { tr { th { "Ticket" } th { (t.created) } th { (t.customer) } th { (t.subject) } } }
                tbody {
                    @for hit in hits {
                        tr {
                            td { a href=(format!("/tickets/{}", urlencode(&hit.number))) { (hit.number) } }
                            td { (hit.received_at) }
                            td { (hit.from_name) " <" (hit.from) ">" }
                            td.subject { (hit.subject) }
                        }
                    }
                }
            },
        }
    };
    page(lang, t.find_mail, Some(&session), content)
}

/// An address or a domain (`kunde@example.com`, `@example.com`) searches by sender; anything
/// else by words in the subject and text.
fn query_for(q: &str) -> FindQuery {
    let single = !q.contains(char::is_whitespace);
    match q.parse::<Sender>() {
        Ok(sender) if single && q.contains('@') => FindQuery {
            from: Some(sender),
            ..FindQuery::default()
        },
        _ => FindQuery {
            text: Some(q.to_string()),
            ..FindQuery::default()
        },
    }
}

pub async fn show(
    State(web): State<Web>,
    Extension(lang): Extension<Lang>,
    Extension(session): Extension<Session>,
    Path(number): Path<String>,
) -> Response {
    let t = lang.t();
    let ticket = match web.store.show_ticket(&number).await {
        Ok(Some(ticket)) => ticket,
        Ok(None) => return (StatusCode::NOT_FOUND, format!("no ticket {number}")).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let base = format!("/tickets/{}", urlencode(&ticket.number));
    let content = html! {
        p { a href="/tickets" { (t.back) } }
        h1 { "Ticket " (ticket.number) ": " (ticket.subject) }
        p.meta {
            (ticket.account) " · " (ticket.ticket_type) " · " (ticket.status) " · "
            (ticket.customer_name) " <" (ticket.customer) "> · " (ticket.created_at)
        }
        @for (i, article) in ticket.articles.iter().enumerate() {
            @let n = i + 1;
            article.mail id=(format!("a{n}")) {
                h2 { (article.subject) }
                p.meta { (article.from_name) " <" (article.from) "> · " (article.received_at) }
                pre.text { (article.text) }
                p {
                    a.download href=(format!("{base}/{n}/raw")) { (t.raw_mail) }
                }
                @if !article.attachments.is_empty() {
                    h3 { (t.attachments) }
                    ul {
                        @for (j, a) in article.attachments.iter().enumerate() {
                            li {
                                a href=(format!("{base}/{n}/attachments/{}", j + 1)) { (a.filename) }
                                " (" (a.content_type) ", " (a.size) " B)"
                            }
                        }
                    }
                }
            }
        }
    };
    page(lang, &ticket.number, Some(&session), content).into_response()
}

pub async fn raw(State(web): State<Web>, Path((number, article)): Path<(String, u32)>) -> Response {
    match web.store.raw_mail(&number, article).await {
        Ok(bytes) => download(&format!("ticket-{number}-{article}.eml"), bytes),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}

pub async fn attachment(
    State(web): State<Web>,
    Path((number, article, index)): Path<(String, u32, u32)>,
) -> Response {
    match web.store.attachment(&number, article, index).await {
        Ok(a) => download(&a.filename, a.data),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}

/// A download that the browser saves and never shows: the type is opaque, and the file name
/// (which a sender chose) is reduced to safe characters for the plain parameter and
/// percent-encoded for `filename*` (RFC 6266).
fn download(filename: &str, data: Vec<u8>) -> Response {
    let plain: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = url::form_urlencoded::byte_serialize(filename.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    let disposition = format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}");
    let mut response = data.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_searches_by_sender_and_words_by_text() {
        assert!(query_for("kunde@example.com").from.is_some());
        assert!(query_for("@example.com").from.is_some());
        let words = query_for("Bestellung 4711");
        assert_eq!(words.text.as_deref(), Some("Bestellung 4711"));
        assert!(words.from.is_none());
    }

    #[test]
    fn a_download_name_cannot_break_the_header() {
        let r = download("a\"b\r\nSet-Cookie: x.html", vec![1]);
        let d = r.headers()[header::CONTENT_DISPOSITION].to_str().unwrap();
        assert!(
            d.starts_with("attachment; filename=\"a_b__Set-Cookie__x.html\""),
            "{d}"
        );
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
    }
}
