//! The frame of every page: head with the embedded stylesheet and script, the navigation, and
//! the page's content. maud escapes every value spliced in; `PreEscaped` is never used on
//! anything that came from the config file or from mail.

use maud::{html, Markup, DOCTYPE};

use super::lang::Lang;
use super::session::Session;

pub fn page(lang: Lang, title: &str, session: Option<&Session>, content: Markup) -> Markup {
    let t = lang.t();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – mail2ticket" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "mail2ticket" }
                    @if let Some(session) = session {
                        nav {
                            a href="/" { (t.title) }
                            a href="/tickets" { (t.find_mail) }
                            form.logout method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button type="submit" { (t.logout) }
                            }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}
