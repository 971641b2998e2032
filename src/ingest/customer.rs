//! Who a ticket's customer is, and who an automatic reply goes to. Pure.
//!
//! A contact form sends `From: Webshop Kontaktformular <noreply@shop…>` with
//! `Reply-To: Erika Mustermann <kunde@…>`: the person is in Reply-To. So by default the customer
//! is the Reply-To person (name and address) when there is one, else the From person; an account
//! can choose `customer = "from"` instead (like Zammad's "sender based on Reply-To", off).
//! A reply always goes where the mail asks replies to go (RFC 5322 3.6.2): Reply-To, else From.

use crate::config::CustomerSource;
use crate::ingest::parse::ParsedMail;

/// An address with its display name (empty when the mail gives none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Person<'a> {
    pub email: &'a str,
    pub name: &'a str,
}

/// The person a reply goes to: the Reply-To person when the mail has one, else the From person.
/// A Reply-To without a display name gives no name: the From's name may be a form's or a
/// robot's ("Webshop Kontaktformular"), which is worse than none.
pub fn reply_person(mail: &ParsedMail) -> Person<'_> {
    match mail.reply_to_email.as_deref().map(str::trim) {
        Some(email) if !email.is_empty() => Person {
            email,
            name: mail.reply_to_name.trim(),
        },
        _ => from_person(mail),
    }
}

/// The ticket's customer under the account's `customer` setting.
pub fn customer(mail: &ParsedMail, source: CustomerSource) -> Person<'_> {
    match source {
        CustomerSource::ReplyTo => reply_person(mail),
        CustomerSource::From if !mail.from_email.trim().is_empty() => from_person(mail),
        // A mail without From still has somebody to name.
        CustomerSource::From => reply_person(mail),
    }
}

fn from_person(mail: &ParsedMail) -> Person<'_> {
    Person {
        email: mail.from_email.trim(),
        name: mail.from_name.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    const FORM: &[u8] = b"From: Webshop Kontaktformular <noreply@shop.test>\r\n\
Reply-To: Erika Mustermann <kunde@customer.test>\r\nSubject: Kontakt\r\n\r\nHallo\r\n";

    #[test]
    fn a_contact_form_mail_belongs_to_the_reply_to_person() {
        let mail = parse(FORM);
        let who = Person {
            email: "kunde@customer.test",
            name: "Erika Mustermann",
        };
        assert_eq!(customer(&mail, CustomerSource::ReplyTo), who);
        assert_eq!(reply_person(&mail), who);
    }

    #[test]
    fn customer_from_keeps_the_from_person_but_the_reply_still_goes_to_reply_to() {
        let mail = parse(FORM);
        assert_eq!(
            customer(&mail, CustomerSource::From),
            Person {
                email: "noreply@shop.test",
                name: "Webshop Kontaktformular"
            }
        );
        assert_eq!(reply_person(&mail).email, "kunde@customer.test");
    }

    #[test]
    fn without_reply_to_the_from_person_is_the_customer() {
        let mail = parse(b"From: Kunde <k@customer.test>\r\nSubject: x\r\n\r\nx");
        for source in [CustomerSource::ReplyTo, CustomerSource::From] {
            assert_eq!(
                customer(&mail, source),
                Person {
                    email: "k@customer.test",
                    name: "Kunde"
                }
            );
        }
    }

    #[test]
    fn a_reply_to_without_a_name_does_not_borrow_the_from_name() {
        let mail = parse(b"From: Webshop <form@shop.test>\r\nReply-To: k@customer.test\r\n\r\nx");
        assert_eq!(
            customer(&mail, CustomerSource::ReplyTo),
            Person {
                email: "k@customer.test",
                name: ""
            }
        );
    }
}
