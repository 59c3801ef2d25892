//! Discord templates: the `template` of a `[pattern.discord]` section, split once at load
//! time into literal text and `{field}` placeholders, and the section's `color`.
//!
//! [`parse_template`] turns `"**{player}** joined {server}"` into [`TemplatePart`]s; `{{` and
//! `}}` stand for literal braces. Which placeholders a template may name (the pattern's
//! captures and [`BUILTIN_TEMPLATE_FIELDS`]) is checked by [`super::load`], which knows the
//! regex. The Discord sink renders the parts; nothing here escapes or sends anything.
//!
//! How it fails: an unmatched brace or an empty `{}` is
//! [`PatternErrorKind::TemplateSyntax`]; a colour out of range is `None`, which the loader
//! reports as [`PatternErrorKind::Color`].

use super::error::PatternErrorKind;
use super::spec::ColorSpec;

/// Placeholders every Discord template may use besides the pattern's captures. A capture of the
/// same name (the shipped `chat` pattern captures `message`) takes precedence.
pub const BUILTIN_TEMPLATE_FIELDS: &[&str] = &["server", "event_type", "severity", "message"];

// The template's data types live with the event that carries them (see `event::PatternInfo`).
pub use crate::event::{DiscordTemplate, TemplatePart};

/// Splits a template into literal text and `{field}` placeholders; `{{` and `}}` are braces.
pub fn parse_template(t: &str) -> Result<Vec<TemplatePart>, PatternErrorKind> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        // Capture names may hold `.`, `[` and `]` as well (regex 1.9+).
                        Some(c) if c != '{' => name.push(c),
                        _ => return Err(PatternErrorKind::TemplateSyntax),
                    }
                }
                if name.is_empty() {
                    return Err(PatternErrorKind::TemplateSyntax);
                }
                if !lit.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Field(name));
            }
            '}' => return Err(PatternErrorKind::TemplateSyntax),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Literal(lit));
    }
    Ok(parts)
}

/// The colour of a `color` value: `0x000000` to `0xFFFFFF` as a number or as `"#rrggbb"`;
/// `None` for anything else.
pub(crate) fn parse_color(c: &ColorSpec) -> Option<u32> {
    let v = match c {
        ColorSpec::Number(n) => u32::try_from(*n).ok()?,
        ColorSpec::Hex(s) => {
            let hex = s.strip_prefix('#')?;
            if hex.len() != 6 {
                return None;
            }
            u32::from_str_radix(hex, 16).ok()?
        }
    };
    (v <= 0xFF_FFFF).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_with_escaped_braces() {
        assert_eq!(
            parse_template("{{x}} {player}!").unwrap(),
            vec![
                TemplatePart::Literal("{x} ".into()),
                TemplatePart::Field("player".into()),
                TemplatePart::Literal("!".into())
            ]
        );
        assert!(parse_template("{oops").is_err());
        assert!(parse_template("a } b").is_err());
        assert!(parse_template("{}").is_err());
        assert_eq!(
            parse_template("{a.b[0]}").unwrap(),
            vec![TemplatePart::Field("a.b[0]".into())]
        );
    }

    #[test]
    fn colors_accept_numbers_and_hex_strings() {
        assert_eq!(parse_color(&ColorSpec::Number(0xff0000)), Some(0xff0000));
        assert_eq!(
            parse_color(&ColorSpec::Hex("#00ff00".into())),
            Some(0x00ff00)
        );
        assert_eq!(parse_color(&ColorSpec::Number(0x1000000)), None);
        assert_eq!(parse_color(&ColorSpec::Hex("red".into())), None);
    }
}
