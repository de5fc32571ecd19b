//! auth's API: accounts, sessions, profiles, and the admin's user list.

use reqwest::Method;
use serde::Deserialize;

use super::{Api, ApiResult, Page, encode};

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub created_at: String,
}

/// The signed-in customer's own details (`GET /api/users/profile`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub address: Option<Address>,
}

/// A postal address, as auth keeps it.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct Address {
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub user: User,
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

impl Api {
    pub async fn profile(&self, token: &str) -> ApiResult<Profile> {
        self.json(self.request(
            Method::GET,
            format!("{}/api/users/profile", self.urls.auth),
            Some(token),
        ))
        .await
    }

    /// Sets the name, and sets or clears (`None`) the phone and the address.
    pub async fn update_profile(
        &self,
        token: &str,
        name: &str,
        phone: Option<&str>,
        address: Option<&Address>,
    ) -> ApiResult<Profile> {
        let body = serde_json::json!({ "name": name, "phone": phone, "address": address });
        self.json(
            self.request(
                Method::PATCH,
                format!("{}/api/users/profile", self.urls.auth),
                Some(token),
            )
            .json(&body),
        )
        .await
    }

    pub async fn signup(&self, email: &str, password: &str, name: &str) -> ApiResult<Session> {
        let body = serde_json::json!({ "email": email, "password": password, "name": name });
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/users/signup", self.urls.auth),
                None,
            )
            .json(&body),
        )
        .await
    }

    pub async fn signin(
        &self,
        email: &str,
        password: &str,
        client_ip: Option<&str>,
    ) -> ApiResult<Session> {
        let body = serde_json::json!({ "email": email, "password": password });
        let mut request = self
            .request(
                Method::POST,
                format!("{}/api/users/signin", self.urls.auth),
                None,
            )
            .json(&body);
        if let Some(ip) = client_ip {
            request = request.header("x-real-ip", ip);
        }
        self.json(request).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> ApiResult<Session> {
        let body = serde_json::json!({ "refresh_token": refresh_token });
        self.json(
            self.request(
                Method::POST,
                format!("{}/api/users/refresh", self.urls.auth),
                None,
            )
            .json(&body),
        )
        .await
    }

    pub async fn signout(&self, token: &str) -> ApiResult<()> {
        self.send(self.request(
            Method::POST,
            format!("{}/api/users/signout", self.urls.auth),
            Some(token),
        ))
        .await
        .map(|_| ())
    }

    /// A page of users; `q` is text in their email or name.
    pub async fn users(&self, token: &str, page: i64, q: &str) -> ApiResult<Page<User>> {
        let mut query = vec![("page", page.to_string()), ("per_page", "50".to_owned())];
        if !q.trim().is_empty() {
            query.push(("q", q.trim().to_owned()));
        }
        self.json(
            self.request(
                Method::GET,
                format!("{}/api/users/admin/users", self.urls.auth),
                Some(token),
            )
            .query(&query),
        )
        .await
    }

    /// The users with these ids (at most 100), by id.
    pub async fn users_by_id(
        &self,
        token: &str,
        ids: &[&str],
    ) -> ApiResult<std::collections::HashMap<String, User>> {
        let mut ids: Vec<&str> = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let found: Page<User> = self
            .json(
                self.request(
                    Method::GET,
                    format!("{}/api/users/admin/users", self.urls.auth),
                    Some(token),
                )
                .query(&[("ids", ids.join(",")), ("per_page", "100".to_owned())]),
            )
            .await?;
        Ok(found
            .items
            .into_iter()
            .map(|user| (user.id.clone(), user))
            .collect())
    }

    pub async fn set_blocked(&self, token: &str, user: &str, blocked: bool) -> ApiResult<User> {
        let verb = if blocked { "block" } else { "unblock" };
        self.json(self.request(
            Method::POST,
            format!(
                "{}/api/users/admin/users/{}/{verb}",
                self.urls.auth,
                encode(user)
            ),
            Some(token),
        ))
        .await
    }
}
