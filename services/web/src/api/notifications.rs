//! notifications' API: a customer's notifications.

use reqwest::Method;
use serde::Deserialize;

use super::{Api, ApiResult};

#[derive(Debug, Clone, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    pub read: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Notifications {
    pub items: Vec<Notification>,
    pub unread: u64,
}

impl Api {
    pub async fn notifications(&self, token: &str, limit: i64) -> ApiResult<Notifications> {
        self.json(self.request(
            Method::GET,
            format!(
                "{}/api/notifications?limit={limit}",
                self.urls.notifications
            ),
            Some(token),
        ))
        .await
    }

    pub async fn read_all(&self, token: &str) -> ApiResult<()> {
        self.send(self.request(
            Method::POST,
            format!("{}/api/notifications/read-all", self.urls.notifications),
            Some(token),
        ))
        .await
        .map(|_| ())
    }
}
