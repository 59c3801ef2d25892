//! Factorio rich text, made readable on Discord.
//!
//! Players put rich-text tags in chat: `[item=iron-plate]` shows an icon in game,
//! `[gps=10,-20]` a map pin, `[color=red]text[/color]` coloured text, and
//! `[special-item=…]` a whole blueprint string. On Discord the tags would show as they are,
//! so [`plain`] turns each known tag into words before the value is escaped:
//!
//! | Tag | Shown as |
//! |-----|----------|
//! | `[item=iron-plate]`, `[entity=…]`, `[technology=…]`, `[recipe=…]`, `[fluid=…]`, `[tile=…]`, `[virtual-signal=…]`, `[item-group=…]`, `[achievement=…]`, `[planet=…]`, `[space-location=…]`, `[quality=…]`, `[asteroid-chunk=…]` | the name: `iron-plate`; with a quality, `iron-plate (rare)` |
//! | `[gps=1,2]`, `[gps=1,2,vulcanus]` | `📍1,2`, `📍1,2 (vulcanus)` |
//! | `[img=item/iron-plate]` | `iron-plate` |
//! | `[train=12]`, `[train-stop=7]` | `train 12`, `train stop 7` |
//! | `[armor=player]` | `player's armor` |
//! | `[tooltip=text,locale]` | `text` |
//! | `[special-item=…]` | `(blueprint)` |
//! | `[color=…]`, `[/color]`, `[font=…]`, `[/font]` | nothing: the text between them stays |
//!
//! Anything else in brackets is left as written. Only what is posted to Discord changes: the
//! event's `raw` and `fields` keep the tags verbatim.
//!
//! # How it fails
//!
//! It does not: a tag it does not know, or a broken one, is left as it is.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// `[name]`, `[name=value]` or `[/name]`; the value has no `]` (Factorio's does not either).
static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[(/?)([a-z][a-z-]*)(?:=([^\]\n]*))?\]").expect("the rich-text tag regex")
});

/// Tags that name a prototype: shown as its name.
const NAMED: &[&str] = &[
    "item",
    "entity",
    "technology",
    "recipe",
    "fluid",
    "tile",
    "virtual-signal",
    "item-group",
    "achievement",
    "planet",
    "space-location",
    "quality",
    "asteroid-chunk",
];

/// `text` with every known Factorio rich-text tag replaced by readable words.
pub fn plain(text: &str) -> Cow<'_, str> {
    if !text.contains('[') {
        return Cow::Borrowed(text);
    }
    TAG.replace_all(text, |c: &Captures<'_>| {
        let whole = &c[0];
        let closing = !c[1].is_empty();
        let name = &c[2];
        let value = c.get(3).map(|v| v.as_str());
        match (closing, name, value) {
            (true, "color" | "font", None) | (false, "color" | "font", Some(_)) => String::new(),
            (false, "gps", Some(v)) => {
                let mut parts = v.splitn(3, ',').map(str::trim);
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(x), Some(y), None) => format!("📍{x},{y}"),
                    (Some(x), Some(y), Some(surface)) => format!("📍{x},{y} ({surface})"),
                    _ => whole.to_owned(),
                }
            }
            (false, "special-item", Some(_)) => "(blueprint)".to_owned(),
            (false, "img", Some(v)) => v.rsplit(['/', '.']).next().unwrap_or(v).to_owned(),
            (false, "train", Some(v)) => format!("train {v}"),
            (false, "train-stop", Some(v)) => format!("train stop {v}"),
            (false, "armor", Some(v)) => format!("{v}'s armor"),
            (false, "tooltip", Some(v)) => v.split(',').next().unwrap_or(v).to_owned(),
            (false, n, Some(v)) if NAMED.contains(&n) => match v.split_once(",quality=") {
                Some((item, quality)) => format!("{item} ({quality})"),
                None => v.to_owned(),
            },
            _ => whole.to_owned(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn known_tags_become_words() {
        for (tagged, shown) in [
            ("need [item=iron-plate] here", "need iron-plate here"),
            ("[item=iron-plate,quality=rare]", "iron-plate (rare)"),
            ("come to [gps=1,2]", "come to 📍1,2"),
            ("[gps=-10.5,20,vulcanus]", "📍-10.5,20 (vulcanus)"),
            ("[color=red]danger[/color]!", "danger!"),
            ("[color=1,0,0]x[/color] [font=default-bold]y[/font]", "x y"),
            (
                "bp: [special-item=0eNqVkt1ugzAMhd/F12kF]",
                "bp: (blueprint)",
            ),
            (
                "[img=item/iron-gear-wheel] [img=utility.warning_icon]",
                "iron-gear-wheel warning_icon",
            ),
            ("[train=12] at [train-stop=7]", "train 12 at train stop 7"),
            ("[armor=bob]", "bob's armor"),
            (
                "[technology=automation-2] [virtual-signal=signal-A]",
                "automation-2 signal-A",
            ),
        ] {
            assert_eq!(plain(tagged), shown, "{tagged}");
        }
    }

    #[test]
    fn other_brackets_are_left_as_written() {
        for text in [
            "[Dog] says hi",
            "[unknown=1]",
            "[gps=1]",
            "a [b] c",
            "[item]",
            "no tags",
        ] {
            assert_eq!(plain(text), text);
        }
    }
}
