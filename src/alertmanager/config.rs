//! The `[alertmanager]` section: the receiver's token, the webhook alerts go to, and per
//! severity a webhook and the roles to ping.
//!
//! ```toml
//! [alertmanager]
//! token_file = "/etc/factorio-isr/alertmanager.token"  # or ALERTMANAGER_TOKEN
//! webhook = "alerts"                                    # default: [discord] default_webhook
//!
//! [alertmanager.routes.critical]
//! webhook = "oncall"
//! mention_roles = ["123456789012345678"]
//! ```
//!
//! How it fails: a token file that cannot be read, or is empty, is an [`AlertmanagerError`]
//! naming the file, never the token. Role ids that are not Discord snowflakes and webhooks that
//! are not configured are found by `check` (and `run` before it starts), each with its line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::event::is_discord_snowflake;
use crate::settings::{InvalidSetting, Secret};

/// Most role ids one `mention_roles` list may hold.
pub const MAX_MENTION_ROLES: usize = 10;

/// The `[alertmanager]` section. The receiver (`POST /alertmanager` on the admin server) is off
/// unless a token is set (`token_file` or `ALERTMANAGER_TOKEN`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// A file holding the bearer token Alertmanager sends (`Authorization: Bearer <token>`);
    /// surrounding whitespace is ignored. `ALERTMANAGER_TOKEN` overrides it. Relative to the
    /// config file's directory when relative.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The Discord webhook (a name under `[discord.webhooks]`) alerts go to when their
    /// severity's route names none. Unset: `[discord] default_webhook`.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Per value of the alerts' `severity` label (`critical`, `warning`…): where they go and
    /// whom they ping.
    #[serde(default)]
    pub routes: BTreeMap<String, AlertRoute>,
}

/// `[alertmanager.routes.<severity>]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AlertRoute {
    /// The webhook these alerts go to. Unset: `[alertmanager] webhook`.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Discord role ids (17 to 20 digits, as strings) pinged when these alerts fire. Resolved
    /// alerts ping nobody.
    #[serde(default)]
    pub mention_roles: Vec<String>,
}

/// The receiver's token cannot be had.
#[derive(Debug, Error)]
pub enum AlertmanagerError {
    /// The token file cannot be read.
    #[error(
        "{}: cannot read the Alertmanager token file ([alertmanager] token_file): {source}",
        path.display()
    )]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The token is empty.
    #[error(
        "{what} is empty: put the bearer token Alertmanager sends (its http_config.authorization credentials) there"
    )]
    EmptyToken {
        /// `ALERTMANAGER_TOKEN` or the file.
        what: String,
    },
}

impl AlertmanagerConfig {
    /// Checks what serde cannot: every route's key is a severity name and no list of roles is
    /// longer than [`MAX_MENTION_ROLES`]. Role ids themselves are checked by
    /// [`AlertmanagerConfig::bad_role_ids`], with their lines.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (severity, route) in &self.routes {
            if severity.is_empty()
                || !severity
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(InvalidSetting::new(
                    "alertmanager.routes",
                    "has a table that is not a severity name: use the value of the alerts' severity label, e.g. [alertmanager.routes.critical]",
                ));
            }
            if route.mention_roles.len() > MAX_MENTION_ROLES {
                return Err(InvalidSetting::new(
                    "alertmanager.routes.mention_roles",
                    "lists more than 10 roles: ping a role that holds the people instead",
                ));
            }
        }
        Ok(())
    }

    /// Each `(severity, id)` of the routes' `mention_roles` that is not a Discord role id.
    pub fn bad_role_ids(&self) -> Vec<(&str, &str)> {
        self.routes
            .iter()
            .flat_map(|(severity, route)| {
                route
                    .mention_roles
                    .iter()
                    .filter(|id| !is_discord_snowflake(id))
                    .map(move |id| (severity.as_str(), id.as_str()))
            })
            .collect()
    }

    /// Resolves `token_file` against `base` when it is relative.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.token_file
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    /// The token in force: `env_token` (`ALERTMANAGER_TOKEN`), else the token file's text
    /// without surrounding whitespace; `None` when neither is set (the receiver is off).
    pub fn token(&self, env_token: Option<&Secret>) -> Result<Option<Secret>, AlertmanagerError> {
        let (token, what) = match (env_token, &self.token_file) {
            (Some(t), _) => (
                t.expose().trim().to_owned(),
                "ALERTMANAGER_TOKEN".to_owned(),
            ),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    AlertmanagerError::TokenFile {
                        path: path.clone(),
                        source,
                    }
                })?;
                (
                    text.trim().to_owned(),
                    format!("{} ([alertmanager] token_file)", path.display()),
                )
            }
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            return Err(AlertmanagerError::EmptyToken { what });
        }
        Ok(Some(Secret::new(token)))
    }

    /// The route of alerts of `severity`, when one is configured.
    pub fn route(&self, severity: &str) -> Option<&AlertRoute> {
        self.routes.get(severity)
    }

    /// The webhooks this section names (its own and its routes').
    pub fn webhooks(&self) -> impl Iterator<Item = (Vec<&str>, &str)> {
        let own = self
            .webhook
            .as_deref()
            .map(|w| (vec!["alertmanager", "webhook"], w));
        let routes = self.routes.iter().filter_map(|(severity, r)| {
            r.webhook.as_deref().map(|w| {
                (
                    vec!["alertmanager", "routes", severity.as_str(), "webhook"],
                    w,
                )
            })
        });
        own.into_iter().chain(routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_roles_are_read_and_checked() {
        let c: AlertmanagerConfig = toml::from_str(
            "webhook = \"alerts\"\n[routes.critical]\nwebhook = \"oncall\"\nmention_roles = [\"123456789012345678\", \"@everyone\"]\n[routes.warning]\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.bad_role_ids(), [("critical", "@everyone")]);
        assert_eq!(
            c.route("critical").unwrap().webhook.as_deref(),
            Some("oncall")
        );
        let names: Vec<&str> = c.webhooks().map(|(_, w)| w).collect();
        assert_eq!(names, ["alerts", "oncall"]);
        let many = AlertmanagerConfig {
            routes: BTreeMap::from([(
                "critical".to_owned(),
                AlertRoute {
                    webhook: None,
                    mention_roles: vec!["123456789012345678".to_owned(); 11],
                },
            )]),
            ..AlertmanagerConfig::default()
        };
        assert_eq!(
            many.validate().unwrap_err().key,
            "alertmanager.routes.mention_roles"
        );
    }

    #[test]
    fn the_token_comes_from_the_environment_else_the_file_and_is_never_shown() {
        let dir = std::env::temp_dir().join(format!("isr-am-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "  s3cret-TOKEN\n").unwrap();
        let mut c = AlertmanagerConfig {
            token_file: Some(PathBuf::from("token")),
            ..AlertmanagerConfig::default()
        };
        c.resolve_paths(&dir);
        assert_eq!(c.token(None).unwrap().unwrap().expose(), "s3cret-TOKEN");
        let env = Secret::new("from-env");
        assert_eq!(c.token(Some(&env)).unwrap().unwrap().expose(), "from-env");
        assert!(AlertmanagerConfig::default().token(None).unwrap().is_none());
        std::fs::write(&file, "\n").unwrap();
        let err = c.token(None).unwrap_err().to_string();
        assert!(err.contains("is empty") && err.contains("token"), "{err}");
        std::fs::remove_file(&file).unwrap();
        let err = c.token(None).unwrap_err().to_string();
        assert!(
            err.contains("cannot read") && err.contains("token_file"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
