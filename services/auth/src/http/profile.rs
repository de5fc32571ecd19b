//! `GET|PATCH /api/users/profile`: the signed-in user's own name, phone and address.

use axum::extract::State;
use mongodb::bson::{self, Document};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use storefront_kit::{Error, Json, auth::CurrentUser};

use super::views::{self, UserView};
use crate::{
    AppState,
    domain::{Address, DisplayName, Fields, Phone},
};

/// Absent = unchanged; `null` = cleared (phone, address); a value = set. At least one change.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = views::without_defaults)]
pub struct ProfilePatch {
    /// The display name, 1 to 100 characters (`null` leaves it as it is).
    #[serde(default)]
    name: Option<String>,
    /// 7 to 15 digits, an optional leading `+`; spaces, dashes, dots and brackets are ignored.
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    phone: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<Address>")]
    address: Option<Option<Address>>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(claims): CurrentUser,
) -> Result<Json<UserView>, Error> {
    let user = state
        .store
        .user_by_id(claims.sub)
        .await?
        .ok_or_else(|| Error::NotFound("this account no longer exists".into()))?;
    Ok(Json(user.into()))
}

pub async fn update(
    State(state): State<AppState>,
    CurrentUser(claims): CurrentUser,
    Json(patch): Json<ProfilePatch>,
) -> Result<Json<UserView>, Error> {
    let mut set = Document::new();
    let mut unset = Document::new();
    let mut fields = Fields::default();
    if let Some(name) = patch.name.as_deref()
        && let Some(name) = fields.check("name", DisplayName::parse(name))
    {
        set.insert("name", name.into_inner());
    }
    match patch.phone {
        Some(Some(phone)) => {
            if let Some(phone) = fields.check("phone", Phone::parse(&phone)) {
                set.insert("phone", phone.into_inner());
            }
        }
        Some(None) => {
            unset.insert("phone", "");
        }
        None => {}
    }
    match patch.address {
        Some(Some(address)) => match Address::parse(address) {
            Ok(address) => {
                set.insert("address", bson::to_bson(&address).map_err(Error::internal)?);
            }
            Err(errors) => {
                for (field, message) in errors {
                    fields.add(field, message);
                }
            }
        },
        Some(None) => {
            unset.insert("address", "");
        }
        None => {}
    }
    fields.finish()?;
    if set.is_empty() && unset.is_empty() {
        return Err(Error::BadRequest(
            "nothing to change: send name, phone or address".into(),
        ));
    }
    let user = state
        .store
        .update_profile(claims.sub, set, unset)
        .await?
        .ok_or_else(|| Error::NotFound("this account no longer exists".into()))?;
    Ok(Json(user.into()))
}
