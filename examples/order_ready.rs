//! The original module's order integration, in Rust: when the kitchen marks an order ready, the
//! customer gets the `order_ready` template (one of the defaults every tenant starts with, named
//! as the original's `get_template_id("order_ready")` did), linked to the customer and the order. An opted-out
//! customer is not texted, and the caller learns why.
//!
//! Run with: `cargo xtask build-plugins && cargo run -p herald --example order_ready`

mod common;

use herald::store::{OptOutChange, OptOutMethod};
use herald::{Category, ErrorCode, Herald, SendRequest, TenantId};
use serde_json::json;

/// Tells the customer of order `order_number` that it is ready; `None` when they opted out.
async fn notify_order_ready(
    herald: &Herald,
    tenant: &TenantId,
    template: &str,
    (order_id, order_number, customer_id, phone): (u64, &str, u64, &str),
) -> anyhow::Result<Option<String>> {
    let variables = [
        ("customer_name", json!("John")),
        ("order_number", json!(order_number)),
        ("restaurant_name", json!("AuraConnect Restaurant")),
    ];
    let mut request = SendRequest::template(
        phone.parse()?,
        template,
        variables.into_iter().map(|(k, v)| (k.to_owned(), v)),
    );
    request.references.customer_id = Some(customer_id.to_string());
    request.references.order_id = Some(order_id.to_string());
    match herald.send(tenant, request).await {
        Ok(submitted) => Ok(Some(submitted.message.id)),
        Err(e) if e.code == ErrorCode::RecipientOptedOut => {
            println!("order {order_number}: not texted ({})", e.message);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let carrier = common::carrier().await?;
    let dir = common::temp_dir("order")?;
    let herald = common::herald_with_api(&carrier, &dir).await?;
    let tenant = TenantId::default_tenant();

    // A customer who texted STOP earlier is on the opt-out list.
    herald
        .store()
        .opt_out(&OptOutChange::new(
            &tenant,
            "+14155550123",
            Category::All,
            OptOutMethod::Keyword,
            0,
        ))
        .await?;
    let orders = [
        (456, "ORD-123", 123, "+14155552671"),
        (457, "ORD-124", 124, "+14155550123"),
    ];
    for order in orders {
        if let Some(id) = notify_order_ready(&herald, &tenant, "order_ready", order).await? {
            common::deliver(&herald, &tenant, &id).await?;
        }
    }
    herald.close().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
