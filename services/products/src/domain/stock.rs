//! Stock rules: quantities, admin changes with a reason, and order lines.

use std::collections::BTreeMap;
use storefront_events::ProductId;

use storefront_events::products::LineQuantity;
use storefront_kit::validate::text;

/// A stock quantity or an order line's quantity: 0 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i64);

impl Quantity {
    pub const MAX: i64 = 1_000_000;

    pub fn new(value: i64) -> Result<Self, String> {
        if !(0..=Self::MAX).contains(&value) {
            return Err(format!("a quantity is between 0 and {}", Self::MAX));
        }
        Ok(Quantity(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// Why an admin changed stock: 1 to 200 characters, kept in the stock ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockReason(String);

impl StockReason {
    pub fn parse(raw: &str) -> Result<Self, String> {
        text(raw, "a reason", 200, true, false).map(StockReason)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An admin's stock change: set what is available, or move it by a signed amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockChange {
    Set(Quantity),
    Adjust(i64),
}

impl StockChange {
    /// From the request's `set` / `adjust`: exactly one of them.
    pub fn parse(set: Option<i64>, adjust: Option<i64>) -> Result<Self, String> {
        match (set, adjust) {
            (Some(set), None) => Quantity::new(set).map(StockChange::Set),
            (None, Some(0)) => Err("an adjustment moves stock by a non-zero amount".into()),
            (None, Some(delta)) if delta.abs() > Quantity::MAX => Err(format!(
                "an adjustment moves stock by at most {}",
                Quantity::MAX
            )),
            (None, Some(delta)) => Ok(StockChange::Adjust(delta)),
            _ => Err("give exactly one of `set` and `adjust`".into()),
        }
    }

    /// The change of `available` from `current`, or why it cannot be applied.
    pub fn delta(self, current: i64) -> Result<i64, String> {
        let next = match self {
            StockChange::Set(q) => q.get(),
            StockChange::Adjust(delta) => current + delta,
        };
        if next < 0 {
            return Err(format!(
                "only {current} are available; stock cannot go below zero"
            ));
        }
        if next > Quantity::MAX {
            return Err(format!("stock is at most {}", Quantity::MAX));
        }
        Ok(next - current)
    }
}

/// An order's lines as one quantity per product (an order may name a product twice), in a stable
/// order so concurrent reservations touch products in the same sequence. `None` when a quantity
/// is not positive or the total is out of range.
pub fn merge_lines(lines: impl IntoIterator<Item = (ProductId, i64)>) -> Option<Vec<LineQuantity>> {
    let mut merged: BTreeMap<ProductId, i64> = BTreeMap::new();
    for (product_id, quantity) in lines {
        if quantity <= 0 {
            return None;
        }
        let total = merged.entry(product_id).or_default();
        *total = total.checked_add(quantity)?;
        if *total > Quantity::MAX {
            return None;
        }
    }
    if merged.is_empty() {
        return None;
    }
    Some(
        merged
            .into_iter()
            .map(|(product_id, quantity)| LineQuantity {
                product_id,
                quantity,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_bounded() {
        assert!(Quantity::new(0).is_ok());
        assert!(Quantity::new(-1).is_err());
        assert!(Quantity::new(Quantity::MAX + 1).is_err());
    }

    #[test]
    fn a_change_is_a_set_or_a_non_zero_adjustment() {
        assert_eq!(
            StockChange::parse(Some(5), None),
            Ok(StockChange::Set(Quantity(5)))
        );
        assert_eq!(
            StockChange::parse(None, Some(-2)),
            Ok(StockChange::Adjust(-2))
        );
        assert!(StockChange::parse(None, None).is_err());
        assert!(StockChange::parse(Some(1), Some(1)).is_err());
        assert!(StockChange::parse(None, Some(0)).is_err());
        assert!(StockChange::parse(Some(-1), None).is_err());
    }

    #[test]
    fn stock_never_goes_below_zero() {
        assert_eq!(StockChange::Adjust(-3).delta(5), Ok(-3));
        assert!(StockChange::Adjust(-6).delta(5).is_err());
        assert_eq!(StockChange::Set(Quantity(2)).delta(5), Ok(-3));
        assert!(StockChange::Adjust(Quantity::MAX).delta(1).is_err());
    }

    #[test]
    fn lines_merge_per_product_in_a_stable_order() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let merged = merge_lines([(a, 1), (b, 2), (a, 3)]).unwrap();
        assert_eq!(merged.len(), 2);
        let qa = merged.iter().find(|l| l.product_id == a).unwrap().quantity;
        assert_eq!(qa, 4);
        assert!(merged.windows(2).all(|w| w[0].product_id < w[1].product_id));
        assert!(merge_lines([(a, 0)]).is_none());
        assert!(merge_lines([(a, -1)]).is_none());
        assert!(merge_lines(Vec::new()).is_none());
        assert!(merge_lines([(a, i64::MAX), (a, 1)]).is_none());
    }
}
