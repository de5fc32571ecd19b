//! The consuming services' dead letters (admin).

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{Api, ApiResult, encode, orders::plural};

/// The services whose consumer groups can dead-letter events, in the order the page shows them.
pub const CONSUMERS: [&str; 5] = ["products", "cart", "orders", "payments", "notifications"];
/// One consumer group's dead letters (`GET /api/{service}/admin/dead-letters`).
#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetterList {
    pub group: String,
    pub items: Vec<DeadLetter>,
    pub open: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetter {
    pub id: String,
    pub topic: String,
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    pub error: String,
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub dead_lettered_at: Option<String>,
    /// `open`, `replayed` or `discarded`.
    pub status: String,
    #[serde(default)]
    pub handled_at: Option<String>,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub message: Option<Value>,
}

impl DeadLetter {
    /// `(1 attempt)`, `(5 attempts)`: how often the service tried.
    pub fn attempts_text(&self) -> String {
        self.attempts
            .map(|n| format!("({})", plural(n as usize, "attempt")))
            .unwrap_or_default()
    }

    /// The message as indented JSON, for a `<pre>`.
    pub fn message_text(&self) -> String {
        self.message
            .as_ref()
            .and_then(|m| serde_json::to_string_pretty(m).ok())
            .unwrap_or_else(|| "(not JSON)".to_owned())
    }
}

impl Api {
    /// A consuming service's dead letters (admin).
    pub async fn dead_letters(&self, token: &str, service: &str) -> ApiResult<DeadLetterList> {
        let base = self.service_url(service).unwrap_or_default();
        self.json(self.request(
            Method::GET,
            format!("{base}/api/{service}/admin/dead-letters"),
            Some(token),
        ))
        .await
    }

    /// Replays (`replay`) or discards (`discard`) one dead letter of a service (admin).
    pub async fn handle_dead_letter(
        &self,
        token: &str,
        service: &str,
        id: &str,
        action: &str,
    ) -> ApiResult<DeadLetter> {
        let base = self.service_url(service).unwrap_or_default();
        self.json(self.request(
            Method::POST,
            format!(
                "{base}/api/{service}/admin/dead-letters/{}/{action}",
                encode(id)
            ),
            Some(token),
        ))
        .await
    }
}
