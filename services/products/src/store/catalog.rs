//! The catalog's side of the database: creating, listing, reading and changing products,
//! every write guarded by the product's version.

use super::*;
use storefront_events::ProductId;

/// What a product write sets: every field but the id and the view count, which the analytics
/// consumer increments outside the version. Setting the count this write read would depend on
/// the database noticing the increment in between as a write conflict; not setting it cannot
/// put an older count back.
fn written_fields(product: &ProductDoc) -> Result<Document, StoreError> {
    let mut fields = bson::to_document(product)?;
    fields.remove("_id");
    fields.remove("views");
    Ok(fields)
}

impl ListQuery {
    fn filter(&self) -> Document {
        let mut filter = doc! { "deleted": false };
        if let Some(category) = &self.category {
            filter.insert("category", category);
        }
        let mut price = Document::new();
        if let Some(min) = self.min_price {
            price.insert("$gte", min);
        }
        if let Some(max) = self.max_price {
            // `< max + 1`, the same as `<= max` for integer minor units. SecantusDB's index scan
            // drops the upper bound of `$lte` (pinned by the price-range test).
            price.insert("$lt", max.saturating_add(1));
        }
        if !price.is_empty() {
            filter.insert("price.amount", price);
        }
        if self.in_stock {
            filter.insert("stock.available", doc! { "$gt": 0_i64 });
        }
        if let Some(text) = &self.text {
            let pattern = storefront_kit::validate::literal_pattern(text);
            filter.insert(
                "$or",
                vec![
                    doc! { "title": { "$regex": &pattern, "$options": "i" } },
                    doc! { "description": { "$regex": &pattern, "$options": "i" } },
                ],
            );
        }
        filter
    }

    fn order(&self) -> Document {
        match self.sort {
            Sort::Newest => doc! { "created_at": -1, "_id": -1 },
            Sort::PriceAsc => doc! { "price.amount": 1, "_id": 1 },
            Sort::PriceDesc => doc! { "price.amount": -1, "_id": -1 },
            Sort::Popular => doc! { "views": -1, "_id": -1 },
        }
    }
}

impl Store {
    /// Creates a product (version 1) with its initial stock, and publishes `product.created`.
    pub async fn create(&self, product: &ProductDoc, actor: &str) -> Result<(), StoreError> {
        retry_transient!(self.create_once(product, actor).await)
    }

    async fn create_once(&self, product: &ProductDoc, actor: &str) -> Result<(), StoreError> {
        let mut session = self.mongo.begin().await?;
        self.products
            .insert_one(product)
            .session(&mut session)
            .await?;
        // The initial stock is in the ledger; its event is `product.created` itself.
        if product.stock.available > 0 {
            let entry = LedgerEntry::new(
                product,
                StockMovement::Adjusted,
                product.stock.available,
                None,
                Some("initial stock".into()),
                Some(actor.to_owned()),
            );
            self.ledger.insert_one(&entry).session(&mut session).await?;
        }
        let event = Envelope::new(
            SOURCE,
            product.id,
            1,
            ProductCreated {
                product: product.snapshot(),
            },
        );
        self.outbox.append(&mut session, event).await?;
        self.outbox.commit(session).await.map_err(StoreError::from)
    }

    /// Publishes every product's current snapshot as `product.updated` at its current version,
    /// so a replica that missed events (a new consumer, a broker that lost its topics) catches up;
    /// replicas that are current ignore them. Returns how many it published.
    pub async fn resync(&self) -> Result<usize, StoreError> {
        let mut products = self.products.find(doc! {}).await?;
        let mut count = 0;
        while let Some(product) = products.try_next().await? {
            retry_transient!(
                async {
                    let mut session = self.mongo.begin().await?;
                    let event = Envelope::new(
                        SOURCE,
                        product.id,
                        product.version as u64,
                        ProductUpdated {
                            product: product.snapshot(),
                        },
                    );
                    self.outbox.append(&mut session, event).await?;
                    self.outbox.commit(session).await.map_err(StoreError::from)
                }
                .await
            )?;
            count += 1;
        }
        Ok(count)
    }

    /// Whether any product, deleted or not, was ever created.
    pub async fn has_any_product(&self) -> Result<bool, StoreError> {
        Ok(self.products.find_one(doc! {}).await?.is_some())
    }

    /// A product that is not deleted.
    pub async fn get(&self, id: ProductId) -> Result<Option<ProductDoc>, StoreError> {
        Ok(self
            .products
            .find_one(doc! { "_id": id.to_string(), "deleted": false })
            .await?)
    }

    pub async fn list(&self, query: &ListQuery) -> Result<Page<ProductDoc>, StoreError> {
        let (filter, sort) = (query.filter(), query.order());
        Ok(mongo::page(&self.products, filter, sort, query.page, query.size).await?)
    }

    /// Every category live products are in, with how many, by name.
    pub async fn categories(&self) -> Result<Vec<CategoryCount>, StoreError> {
        let pipeline = [
            doc! { "$match": { "deleted": false } },
            doc! { "$group": { "_id": "$category", "count": { "$sum": 1 } } },
            doc! { "$sort": { "_id": 1 } },
        ];
        let mut found = Vec::new();
        let mut cursor = self.products.aggregate(pipeline).await?;
        while let Some(group) = cursor.try_next().await? {
            let count = storefront_kit::mongo::summed(&group, "count");
            if let Ok(category) = group.get_str("_id") {
                found.push(CategoryCount {
                    category: category.to_owned(),
                    count,
                });
            }
        }
        Ok(found)
    }

    /// Reads a live product, lets `edit` change it, and writes it back one version up with the
    /// event `change` names, unless someone else wrote it in between (then it all runs again).
    pub async fn modify<F>(
        &self,
        id: ProductId,
        expect: Expect,
        edit: F,
    ) -> Result<ProductDoc, StoreError>
    where
        F: Fn(&mut ProductDoc) -> Result<Change, StoreError>,
    {
        retry_transient!(self.modify_once(id, expect, &edit).await)
    }

    async fn modify_once<F>(
        &self,
        id: ProductId,
        expect: Expect,
        edit: &F,
    ) -> Result<ProductDoc, StoreError>
    where
        F: Fn(&mut ProductDoc) -> Result<Change, StoreError>,
    {
        let mut session = self.mongo.begin().await?;
        let current = self
            .products
            .find_one(doc! { "_id": id.to_string(), "deleted": false })
            .session(&mut session)
            .await?
            .ok_or(StoreError::NotFound)?;
        if let Expect::Version(expected) = expect
            && expected != current.version
        {
            return Err(StoreError::VersionMismatch {
                expected,
                current: current.version,
            });
        }
        let mut product = current.clone();
        let change = edit(&mut product)?;
        product.version = current.version + 1;
        product.updated_at = now();
        if matches!(change, Change::Deleted) {
            product.deleted = true;
        }
        let written = self
            .products
            .update_one(
                doc! { "_id": current.id.to_string(), "version": current.version },
                doc! { "$set": written_fields(&product)? },
            )
            .session(&mut session)
            .await?;
        if written.matched_count == 0 {
            return Err(StoreError::Raced);
        }
        let version = product.version as u64;
        match change {
            Change::Updated => {
                let event = Envelope::new(
                    SOURCE,
                    product.id,
                    version,
                    ProductUpdated {
                        product: product.snapshot(),
                    },
                );
                self.outbox.append(&mut session, event).await?;
            }
            Change::Deleted => {
                let event = Envelope::new(
                    SOURCE,
                    product.id,
                    version,
                    ProductDeleted {
                        product_id: product.id,
                        deleted_at: product.updated_at.to_chrono(),
                    },
                );
                self.outbox.append(&mut session, event).await?;
            }
            Change::Stock {
                movement,
                delta,
                reason,
                actor,
            } => {
                self.record(&mut session, &product, movement, delta, None, reason, actor)
                    .await?;
            }
        }
        self.outbox.commit(session).await?;
        Ok(product)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_write_sets_every_field_but_the_id_and_the_view_count() {
        let now = bson::DateTime::now();
        let product = ProductDoc {
            id: ProductId::new(),
            title: "Mug".into(),
            description: String::new(),
            category: "kitchen".into(),
            price: Money {
                amount: 900,
                currency: "USD".into(),
            },
            images: Vec::new(),
            stock: Stock {
                available: 1,
                reserved: 0,
                sold: 0,
            },
            deleted: false,
            version: 2,
            created_at: now,
            updated_at: now,
            views: 41,
        };
        let fields = written_fields(&product).unwrap();
        let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "category",
                "created_at",
                "deleted",
                "description",
                "images",
                "price",
                "stock",
                "title",
                "updated_at",
                "version"
            ]
        );
    }
}
