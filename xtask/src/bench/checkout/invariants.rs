//! The shop's books after a run: stock, charges and items sold agree.

use anyhow::Result;
use futures::StreamExt;

use super::{STOCK, shop::json_of};
use crate::{services, stack::Stack};

/// Succeeded charges on the Stripe stand-in, and how many of them were refunded.
pub(super) async fn stripe_charges(
    client: &reqwest::Client,
    stripe_url: &str,
) -> Result<(u64, u64)> {
    let (mut succeeded, mut refunded, mut after) = (0, 0, None::<String>);
    loop {
        let mut url = format!("{stripe_url}/v1/charges?limit=100");
        if let Some(after) = &after {
            url.push_str(&format!("&starting_after={after}"));
        }
        let page = json_of(
            client
                .get(url)
                .basic_auth(crate::stack::STRIPE_SECRET_KEY, Some(""))
                .send()
                .await?,
        )
        .await?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        for charge in data.iter().filter(|c| c["status"] == "succeeded") {
            succeeded += 1;
            if charge["refunded"] == true {
                refunded += 1;
            }
        }
        after = data
            .last()
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned);
        if page["has_more"] != true || after.is_none() {
            return Ok((succeeded, refunded));
        }
    }
}

/// What the invariants are read from, at one moment.
pub(super) struct Ledger {
    pub(super) stock_ok: bool,
    pub(super) sold: i64,
    pub(super) reserved: i64,
    pub(super) completed: u64,
    pub(super) items: i64,
    pub(super) charges: u64,
    pub(super) refunded: u64,
}

impl Ledger {
    /// Every completed order's items sold, every kept charge a completed order.
    pub(super) fn settled(&self) -> bool {
        self.charges - self.refunded == self.completed && self.items == self.sold
    }

    pub(super) async fn read(
        client: &reqwest::Client,
        base: &str,
        admin: &str,
        products: &[String],
        stack: &Stack,
    ) -> Result<Ledger> {
        let mut stock_ok = true;
        let (mut sold, mut reserved) = (0, 0);
        for id in products.iter() {
            let view = json_of(
                client
                    .get(format!("{base}/api/products/{id}/stock"))
                    .bearer_auth(admin)
                    .send()
                    .await?,
            )
            .await?;
            let s = &view["stock"];
            let (a, r, so) = (
                s["available"].as_i64().unwrap_or(-1),
                s["reserved"].as_i64().unwrap_or(-1),
                s["sold"].as_i64().unwrap_or(-1),
            );
            stock_ok &= a + r + so == STOCK && a >= 0 && r >= 0;
            sold += so;
            reserved += r;
        }
        let mongo = mongodb::Client::with_uri_str(&stack.endpoints.mongodb_uri).await?;
        let orders = mongo
            .database(&format!("{}_orders", services::TOPIC_PREFIX))
            .collection::<mongodb::bson::Document>("orders");
        let mut completed_orders = orders
            .find(mongodb::bson::doc! { "state": "completed" })
            .await?;
        let (mut completed, mut items) = (0u64, 0i64);
        while let Some(order) = completed_orders.next().await {
            let order = order?;
            completed += 1;
            for line in order
                .get_array("lines")
                .map(|l| l.iter())
                .into_iter()
                .flatten()
            {
                if let Some(line) = line.as_document() {
                    items += line.get_i64("quantity").unwrap_or(0);
                }
            }
        }
        let (charges, refunded) = stripe_charges(client, &stack.endpoints.stripe_url).await?;
        Ok(Ledger {
            stock_ok,
            sold,
            reserved,
            completed,
            items,
            charges,
            refunded,
        })
    }
}
