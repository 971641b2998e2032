//! Auto-reply templates: `{name}` placeholders, `{{` and `}}` for literal braces. Unknown names
//! are caught by check-config, so a typo never reaches a customer as "{ticket_numbr}".

pub const PLACEHOLDERS: &[&str] = &[
    "ticket_number",
    "subject",
    "customer_name",
    "customer_email",
    "ticket_type",
    "ticket_status",
    "account_email",
];

#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{{") {
            out.push(Piece::Text("{"));
            rest = r;
        } else if let Some(r) = rest.strip_prefix("}}") {
            out.push(Piece::Text("}"));
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| "unclosed `{`: write `{{` for a literal brace".to_string())?;
            out.push(Piece::Placeholder(&r[..end]));
            rest = &r[end + 1..];
        } else if rest.starts_with('}') {
            return Err("lone `}`: write `}}` for a literal brace".into());
        } else {
            let end = rest.find(['{', '}']).unwrap_or(rest.len());
            out.push(Piece::Text(&rest[..end]));
            rest = &rest[end..];
        }
    }
    Ok(out)
}

/// Checks a template; the error names the unknown placeholder and lists the known ones.
pub fn check(template: &str) -> Result<(), String> {
    for piece in pieces(template)? {
        if let Piece::Placeholder(name) = piece {
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder {{{name}}}; known: {}",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Fills a checked template; `value` returns the text for a placeholder name.
pub fn render(template: &str, value: impl Fn(&str) -> String) -> String {
    match pieces(template) {
        Ok(pieces) => pieces
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => t.to_string(),
                Piece::Placeholder(name) => value(name),
            })
            .collect(),
        // Templates are checked at config load; an unchecked one is sent as written.
        Err(_) => template.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_literal_braces() {
        let out = render("[{ticket_number}] {{x}} {subject}", |n| format!("<{n}>"));
        assert_eq!(out, "[<ticket_number>] {x} <subject>");
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let err = check("Hello {ticket_numbr}").unwrap_err();
        assert!(err.contains("{ticket_numbr}"), "{err}");
        assert!(check("Hello {customer_name}, {ticket_number}").is_ok());
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        assert!(check("oops {").is_err());
        assert!(check("oops }").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_renders_without_panicking_and_keeps_plain_text(
            template in proptest::prelude::any::<String>(),
            value in proptest::prelude::any::<String>(),
        ) {
            let out = render(&template, |_| value.clone());
            if !template.contains(['{', '}']) {
                proptest::prop_assert_eq!(out, template);
            }
        }

        #[test]
        fn escaped_braces_around_unicode_render_as_single_braces(text in "[^{}]*") {
            let out = render(&format!("{{{{{text}}}}}"), |_| String::new());
            proptest::prop_assert_eq!(out, format!("{{{text}}}"));
        }
    }
}
