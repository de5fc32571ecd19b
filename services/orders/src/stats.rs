//! The shop's sales for the admin's dashboard (`GET /api/orders/admin/stats`): orders placed,
//! completed and cancelled per day, revenue per day and currency, and every product sold.
//!
//! Read when asked from the orders themselves (their ids are UUIDv7, so "placed since" is a range
//! of the primary index), nothing kept on the order's path. A day is a UTC day, and an order
//! counts on the day it was placed; its revenue is its total once it is completed.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use storefront_events::Money;

use crate::domain::OrderState;

/// What the figures read of an order.
#[derive(Debug, Clone, Deserialize)]
pub struct Placed {
    pub state: OrderState,
    pub total: Money,
    pub lines: Vec<PlacedLine>,
    pub created_at: mongodb::bson::DateTime,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PlacedLine {
    pub product_id: String,
    pub title: String,
    pub unit_price: Money,
    pub quantity: i64,
    pub line_total: i64,
}

/// The sales of a window of days.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(rename = "OrderStats")]
pub struct Sales {
    /// The first day covered (`YYYY-MM-DD`, UTC).
    pub from: NaiveDate,
    /// The last day covered: today.
    pub until: NaiveDate,
    pub placed: u64,
    pub completed: u64,
    pub cancelled: u64,
    /// What completed orders took, per currency, the largest first.
    pub revenue: Vec<Money>,
    /// Every day of the window, oldest first.
    pub days: Vec<DaySales>,
    /// Every product in a completed order of the window, most units first (a product sold in two
    /// currencies is here once per currency).
    pub products: Vec<ProductSales>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DaySales {
    pub day: NaiveDate,
    pub placed: u64,
    pub completed: u64,
    pub cancelled: u64,
    /// Per currency, the largest first; empty on a day with no completed order.
    pub revenue: Vec<Money>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ProductSales {
    pub product_id: String,
    /// Its title in the newest of those orders.
    pub title: String,
    /// Units in completed orders.
    pub units: i64,
    /// Completed orders that had it.
    pub orders: u64,
    /// What its lines took (without the order's shipping, fees and taxes).
    pub revenue: Money,
}

#[derive(Default)]
struct Day {
    placed: u64,
    completed: u64,
    cancelled: u64,
    revenue: BTreeMap<String, i64>,
}

/// The first instant of the window of `days` days that ends today.
pub fn window_start(today: NaiveDate, days: u32) -> DateTime<Utc> {
    let first = storefront_kit::validate::first_day(today, days);
    first.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The smallest UUIDv7 of `at`'s millisecond: every id made at or after `at` is not below it
/// (as a string too: lower-case hex of fixed width).
pub fn first_id_at(at: DateTime<Utc>) -> uuid::Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0) & ((1 << 48) - 1);
    // 48 bits of milliseconds, the version (7), the variant (0b10), every other bit 0.
    uuid::Uuid::from_u128((u128::from(millis) << 80) | (0x7 << 76) | (0x2 << 62))
}

fn by_size(revenue: BTreeMap<String, i64>) -> Vec<Money> {
    let mut money: Vec<Money> = revenue
        .into_iter()
        .map(|(currency, amount)| Money { amount, currency })
        .collect();
    money.sort_by(|a, b| b.amount.cmp(&a.amount).then(a.currency.cmp(&b.currency)));
    money
}

/// Folds the orders placed in the window (oldest first, as the index reads them) into its sales.
pub fn summarise(today: NaiveDate, days: u32, orders: &[Placed]) -> Sales {
    let start = window_start(today, days);
    let first = start.date_naive();
    let mut by_day: BTreeMap<NaiveDate, Day> = first
        .iter_days()
        .take_while(|d| *d <= today)
        .map(|d| (d, Day::default()))
        .collect();
    let mut products: HashMap<(String, String), ProductSales> = HashMap::new();
    let mut total = BTreeMap::new();
    for order in orders {
        let placed = order.created_at.to_chrono();
        let Some(day) = by_day.get_mut(&placed.date_naive()) else {
            continue;
        };
        day.placed += 1;
        match order.state {
            OrderState::Completed => {
                day.completed += 1;
                *day.revenue.entry(order.total.currency.clone()).or_default() += order.total.amount;
                *total.entry(order.total.currency.clone()).or_default() += order.total.amount;
                for line in &order.lines {
                    let currency = &line.unit_price.currency;
                    let sold = products
                        .entry((line.product_id.clone(), currency.clone()))
                        .or_insert_with(|| ProductSales {
                            product_id: line.product_id.clone(),
                            title: String::new(),
                            units: 0,
                            orders: 0,
                            revenue: Money {
                                amount: 0,
                                currency: currency.clone(),
                            },
                        });
                    sold.title.clone_from(&line.title);
                    sold.units += line.quantity;
                    sold.orders += 1;
                    sold.revenue.amount += line.line_total;
                }
            }
            OrderState::Cancelled => day.cancelled += 1,
            OrderState::Pending | OrderState::AwaitingPayment => {}
        }
    }
    let mut products: Vec<ProductSales> = products.into_values().collect();
    products.sort_by(|a, b| {
        b.units
            .cmp(&a.units)
            .then(b.orders.cmp(&a.orders))
            .then(a.product_id.cmp(&b.product_id))
    });
    let days: Vec<DaySales> = by_day
        .into_iter()
        .map(|(day, d)| DaySales {
            day,
            placed: d.placed,
            completed: d.completed,
            cancelled: d.cancelled,
            revenue: by_size(d.revenue),
        })
        .collect();
    Sales {
        from: first,
        until: today,
        placed: days.iter().map(|d| d.placed).sum(),
        completed: days.iter().map(|d| d.completed).sum(),
        cancelled: days.iter().map(|d| d.cancelled).sum(),
        revenue: by_size(total),
        days,
        products,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(amount: i64, currency: &str) -> Money {
        Money {
            amount,
            currency: currency.into(),
        }
    }

    fn order(at: &str, state: OrderState, total: Money, lines: &[(&str, i64, i64)]) -> Placed {
        let lines = lines
            .iter()
            .map(|(id, quantity, line_total)| PlacedLine {
                product_id: (*id).into(),
                title: format!("Product {id}"),
                unit_price: money(line_total / quantity, &total.currency),
                quantity: *quantity,
                line_total: *line_total,
            })
            .collect();
        Placed {
            state,
            total,
            lines,
            created_at: mongodb::bson::DateTime::from_chrono(
                DateTime::parse_from_rfc3339(at)
                    .unwrap()
                    .with_timezone(&Utc),
            ),
        }
    }

    #[test]
    fn orders_count_on_the_day_they_were_placed_and_only_completed_ones_earn() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let orders = [
            // The day before the window: left out.
            order(
                "2026-11-28T23:59:59Z",
                OrderState::Completed,
                money(999, "USD"),
                &[("a", 1, 999)],
            ),
            order(
                "2026-11-29T00:00:00Z",
                OrderState::Completed,
                money(2500, "USD"),
                &[("a", 2, 2000), ("b", 1, 500)],
            ),
            order(
                "2026-11-29T10:00:00Z",
                OrderState::Cancelled,
                money(700, "USD"),
                &[("b", 1, 700)],
            ),
            order(
                "2026-12-01T08:00:00Z",
                OrderState::Completed,
                money(300, "EUR"),
                &[("b", 3, 300)],
            ),
            order(
                "2026-12-01T09:00:00Z",
                OrderState::AwaitingPayment,
                money(100, "USD"),
                &[("c", 1, 100)],
            ),
        ];
        let sales = summarise(today, 3, &orders);
        assert_eq!(sales.from, NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
        assert_eq!(sales.days.len(), 3, "every day, an empty one too");
        assert_eq!((sales.placed, sales.completed, sales.cancelled), (4, 2, 1));
        assert_eq!(sales.revenue, vec![money(2500, "USD"), money(300, "EUR")]);
        let first = &sales.days[0];
        assert_eq!((first.placed, first.completed, first.cancelled), (2, 1, 1));
        assert_eq!(first.revenue, vec![money(2500, "USD")]);
        assert_eq!(sales.days[1].placed, 0);
        assert!(sales.days[1].revenue.is_empty());
        let ranked: Vec<(&str, i64, u64)> = sales
            .products
            .iter()
            .map(|p| (p.product_id.as_str(), p.units, p.orders))
            .collect();
        assert_eq!(
            ranked,
            vec![("b", 3, 1), ("a", 2, 1), ("b", 1, 1)],
            "b, sold in two currencies, once per currency; the cancelled and the open order sold nothing"
        );
    }

    #[test]
    fn ids_made_from_a_moment_on_sort_after_its_first_id() {
        let at = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = first_id_at(at).to_string();
        let millis = at.timestamp_millis() as u64;
        let id = |ms: u64| {
            uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                (ms % 1000) as u32 * 1_000_000,
            ))
            .to_string()
        };
        assert_eq!(first_id_at(at).get_version_num(), 7);
        for _ in 0..100 {
            assert!(id(millis) >= first, "an id of that millisecond");
            assert!(id(millis + 1) > first, "an id after it");
            assert!(id(millis - 1) < first, "an id before it");
        }
    }

    #[test]
    fn the_window_starts_at_midnight_utc() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert_eq!(
            window_start(today, 2).to_rfc3339(),
            "2026-02-28T00:00:00+00:00"
        );
        assert_eq!(window_start(today, 1).date_naive(), today);
    }
}
