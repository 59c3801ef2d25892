//! Discord message formatting: an event and its pattern's template become a line of message
//! content or an embed, and queued items become webhook request bodies.
//!
//! [`render`] fills a pattern's Discord template with the event's values. The template's own
//! text (its literals and emoji) is trusted: it was written by whoever runs factorio-isr and may
//! hold intended markdown such as `**{player}**`. Every value inserted into it comes from the
//! game (player names, chat messages, mod errors) and is untrusted: it is escaped with
//! [`escape_markdown`] and put on one line, so a player can neither format the message nor ping
//! anyone. Chatty events (joins, chat, deaths, research) become one line of plain content;
//! events whose template names a colour and every event of severity `error` or above become an
//! embed, and an error embed shows the first [`RECORD_LINES_SHOWN`] lines of the failing record
//! in a code block.
//!
//! [`build_body`] packs rendered items into one "Execute Webhook" request body: consecutive
//! lines are joined into one `content`, consecutive embeds share one `embeds` array, and every
//! body carries `"allowed_mentions": {"parse": []}`, so even a mention that got through would not
//! notify anyone. The one exception is made by the config alone: the role ids of `mention_roles`
//! (an item's [`Item::mentions`]) start the content as `<@&id>` and are the only ones
//! `allowed_mentions` lists under `roles`.
//!
//! - [`escape`]: markdown escaping, mention defusing, truncation and code blocks (the set of
//!   escaped characters and why is there).
//! - [`rich_text`]: Factorio rich-text tags (`[item=iron-plate]`, `[gps=1,2]`) in values
//!   become readable words (`iron-plate`, `📍1,2`) before they are escaped.
//! - [`body`]: request bodies and Discord's size limits ([`CONTENT_MAX`] and the rest).
//!
//! # How it fails
//!
//! It does not: every input renders, over-long text is cut, and nothing here panics on input.

pub mod body;
pub mod escape;
pub mod rich_text;

use std::borrow::Cow;

use serde::Serialize;

use self::body::clamp_embed;
pub use self::body::{
    CONTENT_MAX, DESCRIPTION_MAX, EMBED_TOTAL_MAX, EMBEDS_MAX, FIELD_NAME_MAX, FIELD_VALUE_MAX,
    FIELDS_MAX, FOOTER_MAX, MENTIONS_MAX, TITLE_MAX, USERNAME_MAX, build_body,
};
use self::escape::{
    ELLIPSIS, FENCE_OVERHEAD, break_backtick_runs, defuse_mass_mentions, fenced, is_bidi_control,
    is_line_break, single_line,
};
pub use self::escape::{code_block, escape_markdown, truncate};
use crate::event::{Event, Severity};
use crate::patterns::{DiscordTemplate, TemplatePart};

/// Lines of a failing record shown in a crash/error embed.
pub const RECORD_LINES_SHOWN: usize = 15;

/// Embed colour of `critical` and `error` events whose template names none (red).
pub const COLOR_ERROR: u32 = 0xE7_4C3C;
/// Embed colour of `warning` events whose template names none (orange).
pub const COLOR_WARNING: u32 = 0xE6_7E22;
/// Embed colour of other events whose template names none (blue).
pub const COLOR_INFO: u32 = 0x34_98DB;

/// An event rendered for Discord, waiting to be sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The event's severity.
    pub severity: Severity,
    /// What is posted.
    pub body: ItemBody,
    /// The trace of the event's batch, when it was sampled: the request that posts it
    /// continues that trace.
    pub trace: Option<std::sync::Arc<crate::event::TraceIds>>,
    /// Discord role ids the message pings (from the config only: `mention_roles`); empty for
    /// none. Items with different roles never share a message.
    pub mentions: Vec<String>,
}

/// What an [`Item`] posts.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemBody {
    /// One line of plain content: chatty events (joins, chat, deaths, research…).
    Line(String),
    /// An embed: server lifecycle and errors.
    Embed(Embed),
}

/// A Discord embed, in the shape of the API's embed object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Embed {
    /// The title: the rendered template.
    pub title: String,
    /// For errors: the start of the failing record, as a code block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Colour of the embed's left edge, `0xRRGGBB`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<u32>,
    /// Name/value pairs shown under the description (alerts: status, severity, server).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<EmbedField>,
    /// Names the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub footer: Option<Footer>,
    /// When the event happened, ISO 8601 in UTC (`2025-10-08T08:58:34Z`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// One field of an embed: both parts are required by Discord and must not be blank.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmbedField {
    /// The field's name, at most [`FIELD_NAME_MAX`] characters.
    pub name: String,
    /// Its value, at most [`FIELD_VALUE_MAX`] characters.
    pub value: String,
    /// Shown beside the fields next to it rather than on a line of its own.
    pub inline: bool,
}

/// An embed's footer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Footer {
    /// Plain text: Discord renders no markdown in footers.
    pub text: String,
}

/// Renders `event` with its pattern's `template`. `show_server`: prefix the server tag (when
/// several servers share a webhook).
///
/// Each `{name}` placeholder takes the event's capture `name` (as text), else the built-in value
/// of that name (`server`, `event_type`, `severity`, `message`), else nothing; every value has
/// its Factorio rich-text tags made readable ([`rich_text::plain`]) and is escaped and put on one
/// line. The result is an [`ItemBody::Line`] when the template names no
/// colour and the event is below `error`, else an [`ItemBody::Embed`]; both are within Discord's
/// limits.
pub fn render(template: &DiscordTemplate, event: &Event, show_server: bool) -> Item {
    let mut filled = fill(template, event);
    if filled.trim().is_empty() {
        // Discord refuses an empty message; say at least what happened.
        filled = escape_markdown(&event.event_type);
    }
    let text = match template.emoji.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(emoji) => format!("{emoji} {filled}"),
        None => filled,
    };
    let text = defuse_mass_mentions(&text);

    let body = if template.color.is_none() && event.severity < Severity::Error {
        let line = if show_server {
            Cow::Owned(format!("{} {text}", server_badge(&event.source.server)))
        } else {
            text
        };
        ItemBody::Line(truncate(&line, CONTENT_MAX).into_owned())
    } else {
        let mut embed = Embed {
            title: truncate(&text, TITLE_MAX).into_owned(),
            description: (event.severity >= Severity::Error)
                .then(|| record_description(&event.raw)),
            color: Some(
                template
                    .color
                    .unwrap_or_else(|| severity_color(event.severity)),
            ),
            fields: Vec::new(),
            footer: Some(Footer {
                text: format!("server {}", event.source.server),
            }),
            timestamp: Some(event.timestamp.to_string()),
        };
        clamp_embed(&mut embed);
        ItemBody::Embed(embed)
    };
    Item {
        severity: event.severity,
        body,
        trace: event.trace.clone(),
        mentions: template.mention_roles.clone(),
    }
}

/// The embed colour of an event whose template names none.
pub fn severity_color(severity: Severity) -> u32 {
    match severity {
        Severity::Critical | Severity::Error => COLOR_ERROR,
        Severity::Warning => COLOR_WARNING,
        Severity::Info | Severity::Debug => COLOR_INFO,
    }
}

/// The template with its placeholders filled with escaped, single-line values.
fn fill(template: &DiscordTemplate, event: &Event) -> String {
    let mut out = String::new();
    for part in &template.parts {
        match part {
            TemplatePart::Literal(text) => out.push_str(text),
            TemplatePart::Field(name) => {
                let value = field_text(event, name);
                // Anything past the content limit is cut anyway; do not escape a megabyte record.
                let value = rich_text::plain(&value);
                let value = truncate(&value, CONTENT_MAX);
                out.push_str(&escape_markdown(&single_line(&value)));
            }
        }
    }
    out
}

/// The text of a placeholder: the capture, else the built-in value, else nothing.
fn field_text<'a>(event: &'a Event, name: &str) -> Cow<'a, str> {
    if let Some(value) = event.field(name) {
        return match value.as_str() {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(value.to_text()),
        };
    }
    Cow::Borrowed(match name {
        "server" => &event.source.server,
        "event_type" => &event.event_type,
        "severity" => event.severity.as_str(),
        "message" => event.message(),
        _ => "",
    })
}

/// The description of an error embed: the first [`RECORD_LINES_SHOWN`] lines of the record in a
/// code block, with a last line saying how many more there are, within [`DESCRIPTION_MAX`].
fn record_description(raw: &str) -> String {
    let total = raw.split('\n').count();
    let shown: Vec<&str> = raw
        .split('\n')
        .take(RECORD_LINES_SHOWN)
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    let hidden = total.saturating_sub(RECORD_LINES_SHOWN);
    let note = match hidden {
        0 => String::new(),
        1 => format!("\n{ELLIPSIS} 1 more line"),
        n => format!("\n{ELLIPSIS} {n} more lines"),
    };
    let budget = DESCRIPTION_MAX - FENCE_OVERHEAD - note.chars().count();
    let lines = shown.join("\n");
    let lines = break_backtick_runs(&lines);
    let mut inner = truncate(&lines, budget).into_owned();
    inner.push_str(&note);
    fenced(&inner)
}

/// The server tag as inline code, `` `[tag]` ``. Backticks would end the inline code and line
/// breaks would start a new line, so they are left out.
fn server_badge(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .filter(|&c| c != '`' && !is_line_break(c) && !is_bidi_control(c))
        .collect();
    let tag = defuse_mass_mentions(&tag);
    format!("`[{}]`", truncate(&tag, TITLE_MAX))
}

#[cfg(test)]
mod tests;
