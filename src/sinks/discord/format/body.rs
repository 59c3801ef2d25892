//! Webhook request bodies, within Discord's limits.
//!
//! [`build_body`] packs rendered items into one "Execute Webhook" request body: consecutive
//! lines are joined into one `content`, consecutive embeds share one `embeds` array, and every
//! body carries `"allowed_mentions": {"parse": []}`, so even a mention that got through would not
//! notify anyone. Items that ping roles (their [`Item::mentions`], set only from the config's
//! `mention_roles`) go in messages of their own: the content starts with `<@&id>` for each, and
//! `allowed_mentions` becomes `{"parse": [], "roles": [those ids]}`, so nothing else in the
//! message (a player's escaped text, an alert's labels) can ping anyone.
//!
//! # Discord's limits
//!
//! Discord answers `400` to a message over any of its limits, and a message it refuses is lost,
//! so this module never produces one. Lengths are counted the way Discord counts them, in
//! Unicode scalar values (`chars()`), not bytes. Content is at most [`CONTENT_MAX`] characters;
//! a message has at most [`EMBEDS_MAX`] embeds; an embed title is at most [`TITLE_MAX`], its
//! description at most [`DESCRIPTION_MAX`] and its footer text at most [`FOOTER_MAX`]; and the
//! titles, descriptions and footer texts of all embeds of one message add up to at most
//! [`EMBED_TOTAL_MAX`] (fields and authors also count there; this module makes neither). A
//! webhook username is at most [`USERNAME_MAX`] characters.
//!
//! Text over a limit is cut with [`truncate`], which ends it with `…` (the ellipsis counts
//! toward the limit). A code block is cut inside its fences ([`code_block`]), so a cut record
//! still shows as code. [`build_body`] checks the limits again for items it did not render
//! itself, and starts a new body where a run of lines or embeds would go over.
//!
//! # How it fails
//!
//! It does not: every list of items makes a body Discord accepts, and nothing here panics on
//! input.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::escape::{ELLIPSIS, code_block, truncate};
use super::{Embed, Item, ItemBody};

/// Most characters in a message's `content`.
pub const CONTENT_MAX: usize = 2000;
/// Most embeds in one message.
pub const EMBEDS_MAX: usize = 10;
/// Most characters in an embed title.
pub const TITLE_MAX: usize = 256;
/// Most characters in an embed description.
pub const DESCRIPTION_MAX: usize = 4096;
/// Most characters in an embed footer's text.
pub const FOOTER_MAX: usize = 2048;
/// Most characters in all embeds of one message together (titles, descriptions, footers).
pub const EMBED_TOTAL_MAX: usize = 6000;
/// Most characters in a webhook's `username`.
pub const USERNAME_MAX: usize = 80;
/// Most fields in one embed.
pub const FIELDS_MAX: usize = 25;
/// Most characters in an embed field's name.
pub const FIELD_NAME_MAX: usize = 256;
/// Most characters in an embed field's value.
pub const FIELD_VALUE_MAX: usize = 1024;
/// Most role ids one message pings (Discord allows 100 in `allowed_mentions.roles`; 20 pings,
/// at most 23 characters each, leave the content room for the message).
pub const MENTIONS_MAX: usize = 20;

/// Builds one webhook request body from the front of `items`: returns how many items it
/// takes (≥ 1 when `items` is non-empty) and the JSON body.
///
/// - A run of consecutive `Line`s is joined with '\n' into `content`, as many as fit in
///   [`CONTENT_MAX`]; a single over-long line (which [`super::render`] never makes) is cut.
/// - A run of consecutive `Embed`s goes into `embeds`: at most [`EMBEDS_MAX`] and at most
///   [`EMBED_TOTAL_MAX`] characters in all (title + description + footer text); an embed over
///   its own limits (which [`super::render`] never makes) is cut first.
/// - Lines and embeds are not mixed in one body: it stops at the first item of the other kind,
///   so the order of items is kept.
/// - Only the leading run of items with the same [`Item::mentions`]. When they ping roles,
///   the content starts with `<@&id>` for each (lines follow on the next line, within
///   [`CONTENT_MAX`] in all; embeds get the pings as their content) and `allowed_mentions`
///   lists exactly those ids under `roles`.
/// - Always `"allowed_mentions": {"parse": []}` (plus `roles` as above); `"username"` when
///   `username` is given and not blank, cut to [`USERNAME_MAX`] characters.
///
/// With no items it takes none, and the body has neither `content` nor `embeds`.
pub fn build_body(items: &[Item], username: Option<&str>) -> (usize, Value) {
    // Only items that ping the same roles share a message.
    let run = items.first().map_or(0, |first| {
        items
            .iter()
            .take_while(|i| i.mentions == first.mentions)
            .count()
    });
    let items = &items[..run];
    let roles = items
        .first()
        .map(|i| roles(&i.mentions))
        .unwrap_or_default();
    let pings = roles
        .iter()
        .map(|id| format!("<@&{id}>"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut body = Map::new();
    let taken = match items.first().map(|item| &item.body) {
        None => 0,
        Some(ItemBody::Line(_)) => {
            let budget = if pings.is_empty() {
                CONTENT_MAX
            } else {
                CONTENT_MAX.saturating_sub(pings.chars().count() + 1).max(1)
            };
            let (taken, content) = take_lines(items, budget);
            let content = if pings.is_empty() {
                content
            } else {
                format!("{pings}\n{content}")
            };
            body.insert("content".into(), Value::String(content));
            taken
        }
        Some(ItemBody::Embed(_)) => {
            let (taken, embeds) = take_embeds(items);
            if !pings.is_empty() {
                body.insert("content".into(), Value::String(pings));
            }
            // Strings, integers and options of them always serialise.
            let embeds = serde_json::to_value(&embeds).unwrap_or_default();
            body.insert("embeds".into(), embeds);
            taken
        }
    };
    let allowed = if roles.is_empty() {
        json!({ "parse": [] })
    } else {
        json!({ "parse": [], "roles": roles })
    };
    body.insert("allowed_mentions".into(), allowed);
    if let Some(name) = username.map(str::trim).filter(|name| !name.is_empty()) {
        body.insert(
            "username".into(),
            Value::String(truncate(name, USERNAME_MAX).into_owned()),
        );
    }
    (taken, Value::Object(body))
}

/// The role ids a message pings: the valid snowflakes of `mentions`, each once, at most
/// [`MENTIONS_MAX`].
fn roles(mentions: &[String]) -> Vec<&str> {
    let mut roles: Vec<&str> = Vec::new();
    for id in mentions {
        if crate::event::is_discord_snowflake(id)
            && !roles.contains(&id.as_str())
            && roles.len() < MENTIONS_MAX
        {
            roles.push(id);
        }
    }
    roles
}

/// Joins the leading run of lines of `items` into one content: how many it took, and the text.
fn take_lines(items: &[Item], max_chars: usize) -> (usize, String) {
    let mut content = String::new();
    let mut chars = 0;
    let mut taken = 0;
    for item in items {
        let ItemBody::Line(line) = &item.body else {
            break;
        };
        let separator = usize::from(taken > 0);
        let line = if taken == 0 {
            truncate(line, max_chars)
        } else {
            Cow::Borrowed(line.as_str())
        };
        let len = line.chars().count();
        if taken > 0 && chars + separator + len > max_chars {
            break;
        }
        if separator > 0 {
            content.push('\n');
        }
        content.push_str(&line);
        chars += separator + len;
        taken += 1;
    }
    if content.trim().is_empty() {
        // Discord trims content and refuses an empty message.
        content = ELLIPSIS.to_string();
    }
    (taken, content)
}

/// The leading run of embeds of `items` that fits in one message: how many it took, and the
/// embeds, each within its own limits.
fn take_embeds(items: &[Item]) -> (usize, Vec<Embed>) {
    let mut embeds = Vec::new();
    let mut total = 0;
    for item in items {
        let ItemBody::Embed(embed) = &item.body else {
            break;
        };
        if embeds.len() == EMBEDS_MAX {
            break;
        }
        let mut embed = embed.clone();
        clamp_embed(&mut embed);
        let chars = embed_chars(&embed);
        if !embeds.is_empty() && total + chars > EMBED_TOTAL_MAX {
            break;
        }
        total += chars;
        embeds.push(embed);
    }
    (embeds.len(), embeds)
}

/// Cuts an embed's title, description, fields and footer to their limits, drops fields from the
/// end while the embed is over [`EMBED_TOTAL_MAX`] without its footer, then cuts the footer so
/// the whole embed is within it. A description that is a code block stays one.
///
/// Without fields the footer can always absorb the excess: a title and description within their
/// limits hold at most 4352 characters, so the footer keeps at least 1648.
pub(super) fn clamp_embed(embed: &mut Embed) {
    if let Cow::Owned(cut) = truncate(&embed.title, TITLE_MAX) {
        embed.title = cut;
    }
    if let Some(description) = &mut embed.description
        && description.chars().nth(DESCRIPTION_MAX).is_some()
    {
        *description = shorten_description(description, DESCRIPTION_MAX);
    }
    embed.fields.truncate(FIELDS_MAX);
    for field in &mut embed.fields {
        if let Cow::Owned(cut) = truncate(&field.name, FIELD_NAME_MAX) {
            field.name = cut;
        }
        if let Cow::Owned(cut) = truncate(&field.value, FIELD_VALUE_MAX) {
            field.value = cut;
        }
    }
    // Fields are dropped from the end while the embed would be over its total without a footer.
    while !embed.fields.is_empty() && embed_chars_without_footer(embed) > EMBED_TOTAL_MAX {
        embed.fields.pop();
    }
    let used = embed_chars_without_footer(embed);
    let footer_max = FOOTER_MAX.min(EMBED_TOTAL_MAX.saturating_sub(used));
    if let Some(footer) = &mut embed.footer
        && let Cow::Owned(cut) = truncate(&footer.text, footer_max)
    {
        footer.text = cut;
    }
}

/// Cuts a description to `max_chars`, inside the fences when it is a code block.
fn shorten_description(description: &str, max_chars: usize) -> String {
    let inner = description
        .strip_prefix("```\n")
        .and_then(|rest| rest.strip_suffix("\n```"));
    match inner {
        Some(inner) => code_block(inner, max_chars),
        None => truncate(description, max_chars).into_owned(),
    }
}

/// The characters of an embed that count toward [`EMBED_TOTAL_MAX`].
pub(super) fn embed_chars(embed: &Embed) -> usize {
    embed_chars_without_footer(embed) + embed.footer.as_ref().map_or(0, |f| f.text.chars().count())
}

/// The characters of an embed's title, description and fields.
fn embed_chars_without_footer(embed: &Embed) -> usize {
    embed.title.chars().count()
        + embed
            .description
            .as_deref()
            .map_or(0, |d| d.chars().count())
        + embed
            .fields
            .iter()
            .map(|f| f.name.chars().count() + f.value.chars().count())
            .sum::<usize>()
}
