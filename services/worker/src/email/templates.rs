//! The email templates: subject, plain text and HTML for each kind. They are
//! code, so a template that does not build fails the build, and every one is
//! rendered by the tests. Values are HTML-escaped in the HTML part; links are
//! built from `PUBLIC_BASE_URL`.

use domain::messages::EmailTemplate;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template} needs the variable `{name}`")]
    MissingVariable {
        template: &'static str,
        name: &'static str,
    },
}

pub fn escape_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a value for a URL query or path segment.
fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Vars<'a> {
    template: &'static str,
    vars: &'a BTreeMap<String, String>,
}

impl Vars<'_> {
    fn get(&self, name: &'static str) -> Result<&str, TemplateError> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
            .ok_or(TemplateError::MissingVariable {
                template: self.template,
                name,
            })
    }
}

fn name_of(template: EmailTemplate) -> &'static str {
    match template {
        EmailTemplate::VerifyEmail => "verify_email",
        EmailTemplate::PasswordReset => "password_reset",
        EmailTemplate::Welcome => "welcome",
        EmailTemplate::ChatWaiting => "chat_waiting",
        EmailTemplate::ChatTranscript => "chat_transcript",
    }
}

pub fn template_name(template: EmailTemplate) -> &'static str {
    name_of(template)
}

/// A message with a call to action: greeting, paragraph, button, footer.
fn layout(
    subject: String,
    greeting_name: &str,
    paragraph: &str,
    action: &str,
    link: &str,
    footer: &str,
) -> Rendered {
    let text = format!("Hello {greeting_name},\n\n{paragraph}\n\n{action}: {link}\n\n{footer}\n");
    let html = format!(
        "<!doctype html>\n<html><body style=\"font-family:sans-serif\">\
         <p>Hello {name},</p><p>{paragraph}</p>\
         <p><a href=\"{link}\">{action}</a></p>\
         <p style=\"color:#666;font-size:12px\">{footer}</p></body></html>\n",
        name = escape_html(greeting_name),
        paragraph = escape_html(paragraph),
        link = escape_html(link),
        action = escape_html(action),
        footer = escape_html(footer),
    );
    Rendered {
        subject,
        text,
        html,
    }
}

pub fn render(
    template: EmailTemplate,
    vars: &BTreeMap<String, String>,
    base_url: &str,
) -> Result<Rendered, TemplateError> {
    let base = base_url.trim_end_matches('/');
    let vars = Vars {
        template: name_of(template),
        vars,
    };
    let rendered = match template {
        EmailTemplate::VerifyEmail => {
            let name = vars.get("display_name")?;
            let link = format!("{base}/verify-email?token={}", encode(vars.get("token")?));
            layout(
                "Confirm your email address".into(),
                name,
                "Please confirm that this is your email address. The link is valid for 48 hours.",
                "Confirm email address",
                &link,
                "If you did not create an account, ignore this email.",
            )
        }
        EmailTemplate::PasswordReset => {
            let name = vars.get("display_name")?;
            let link = format!("{base}/reset-password?token={}", encode(vars.get("token")?));
            layout(
                "Reset your password".into(),
                name,
                "Someone asked to reset the password of your account. The link is valid for one hour and works once.",
                "Choose a new password",
                &link,
                "If it was not you, ignore this email: your password stays as it is.",
            )
        }
        EmailTemplate::Welcome => {
            let name = vars.get("display_name")?;
            layout(
                "Welcome".into(),
                name,
                "Your account is ready.",
                "Open the app",
                &format!("{base}/"),
                "You receive this email because an account was created with this address.",
            )
        }
        EmailTemplate::ChatWaiting => {
            let name = vars.get("display_name")?;
            let room = vars.get("room_id")?;
            let subject_line = vars
                .vars
                .get("subject")
                .map(String::as_str)
                .unwrap_or("a visitor");
            let link = format!("{base}/staff/chat/rooms/{}", encode(room));
            layout(
                "A visitor is waiting in chat".into(),
                name,
                &format!("A chat is waiting for a free staff member: {subject_line}."),
                "Open the chat",
                &link,
                "You receive these because notify by email is on in your chat settings.",
            )
        }
        EmailTemplate::ChatTranscript => {
            let name = vars.get("display_name")?;
            let room = vars.get("room_id")?;
            let transcript = vars.get("transcript")?;
            let link = format!("{base}/chat/rooms/{}", encode(room));
            let mut rendered = layout(
                "Your chat transcript".into(),
                name,
                "Here is the transcript of your conversation.",
                "View the conversation",
                &link,
                "You receive this because a transcript was requested when the chat closed.",
            );
            rendered
                .text
                .push_str(&format!("\n--- transcript ---\n{transcript}\n"));
            rendered.html = rendered.html.replace(
                "</body>",
                &format!(
                    "<pre style=\"white-space:pre-wrap\">{}</pre></body>",
                    escape_html(transcript)
                ),
            );
            rendered
        }
    };
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASE: &str = "https://app.example.com/";

    #[test]
    fn every_template_renders_subject_both_parts_and_its_link() {
        let cases = [
            (
                EmailTemplate::VerifyEmail,
                vars(&[("display_name", "Ada"), ("token", "abc-_1")]),
                "https://app.example.com/verify-email?token=abc-_1",
            ),
            (
                EmailTemplate::PasswordReset,
                vars(&[("display_name", "Ada"), ("token", "t0k")]),
                "https://app.example.com/reset-password?token=t0k",
            ),
            (
                EmailTemplate::Welcome,
                vars(&[("display_name", "Ada")]),
                "https://app.example.com/",
            ),
            (
                EmailTemplate::ChatWaiting,
                vars(&[("display_name", "Sam"), ("room_id", "r1")]),
                "https://app.example.com/staff/chat/rooms/r1",
            ),
            (
                EmailTemplate::ChatTranscript,
                vars(&[
                    ("display_name", "Ada"),
                    ("room_id", "r2"),
                    ("transcript", "hi\nbye"),
                ]),
                "https://app.example.com/chat/rooms/r2",
            ),
        ];
        for (template, vars, link) in cases {
            let rendered = render(template, &vars, BASE).unwrap();
            assert!(!rendered.subject.is_empty());
            assert!(
                rendered.text.contains(link),
                "{template:?} text: {}",
                rendered.text
            );
            assert!(
                rendered.html.contains(&format!("href=\"{link}\"")),
                "{template:?} html: {}",
                rendered.html
            );
            assert!(rendered.text.contains(vars["display_name"].as_str()));
        }
    }

    #[test]
    fn hostile_values_are_escaped_in_html_and_encoded_in_links() {
        let hostile = vars(&[
            ("display_name", "<script>alert('x')</script>"),
            ("token", "a\"b&c<d"),
        ]);
        let rendered = render(EmailTemplate::VerifyEmail, &hostile, BASE).unwrap();
        assert!(!rendered.html.contains("<script>"));
        assert!(rendered
            .html
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(
            rendered.html.contains("token=a%22b%26c%3Cd"),
            "{}",
            rendered.html
        );
        let transcript = vars(&[
            ("display_name", "A"),
            ("room_id", "r"),
            ("transcript", "</pre><img src=x onerror=1>"),
        ]);
        let html = render(EmailTemplate::ChatTranscript, &transcript, BASE)
            .unwrap()
            .html;
        assert!(!html.contains("<img"), "{html}");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = render(
            EmailTemplate::PasswordReset,
            &vars(&[("display_name", "Ada")]),
            BASE,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "template password_reset needs the variable `token`"
        );
        assert!(render(
            EmailTemplate::Welcome,
            &vars(&[("display_name", " ")]),
            BASE
        )
        .is_err());
    }
}
