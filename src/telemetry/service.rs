//! The `[service]` section: who is sending, the `service` object of every event and the
//! resource of every trace (`SERVICE_NAME`, `SERVICE_VERSION`, `SERVICE_ENVIRONMENT` override
//! it).
//!
//! How it fails: it does not; any text is a valid name.

use serde::Deserialize;

use crate::event::ServiceInfo;

/// Default service name (`SERVICE_NAME`).
pub fn default_service_name() -> String {
    "factorio-isr".to_owned()
}

/// Default deployment environment (`SERVICE_ENVIRONMENT`).
pub fn default_service_environment() -> String {
    "production".to_owned()
}

/// Who is sending: the `service` object of events (and, later, of traces).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name; `SERVICE_NAME` overrides it. Default `factorio-isr`.
    #[serde(default = "default_service_name")]
    pub name: String,
    /// Service version; `SERVICE_VERSION` overrides it. Default: this build's version.
    #[serde(default)]
    pub version: Option<String>,
    /// Deployment environment; `SERVICE_ENVIRONMENT` overrides it. Default `production`.
    #[serde(default = "default_service_environment")]
    pub environment: String,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            name: default_service_name(),
            version: None,
            environment: default_service_environment(),
        }
    }
}

impl ServiceConfig {
    /// The service description (after [`Config::apply`](crate::config::Config::apply) applied the environment).
    pub fn info(&self) -> ServiceInfo {
        ServiceInfo {
            name: self.name.clone(),
            version: self
                .version
                .clone()
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            environment: self.environment.clone(),
        }
    }
}
