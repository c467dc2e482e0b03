//! The original module's reservation integration, in Rust: when a reservation is booked, the
//! customer gets the `reservation_confirmation` template (one of the defaults every tenant
//! starts with, named by its name), linked to the customer and the reservation so that reports
//! and lookups find it.
//!
//! Run with: `cargo xtask build-plugins && cargo run -p herald --example reservation_confirmation`

mod common;

use herald::{Herald, PhoneNumber, SendRequest, TenantId};
use serde_json::json;

/// What the reservation module knows about a booking.
struct Reservation {
    id: u64,
    customer_id: u64,
    customer_name: &'static str,
    phone: Option<&'static str>,
    party_size: u32,
    date: &'static str,
    time: &'static str,
    confirmation_code: &'static str,
}

/// Sends the confirmation of `reservation`, if the customer has a phone number.
async fn send_reservation_confirmation(
    herald: &Herald,
    tenant: &TenantId,
    template: &str,
    reservation: &Reservation,
) -> anyhow::Result<Option<String>> {
    let Some(phone) = reservation.phone else {
        return Ok(None);
    };
    let to: PhoneNumber = phone.parse()?;
    let variables = [
        ("customer_name", json!(reservation.customer_name)),
        ("party_size", json!(reservation.party_size)),
        ("restaurant_name", json!("AuraConnect Restaurant")),
        ("date", json!(reservation.date)),
        ("time", json!(reservation.time)),
        ("confirmation_code", json!(reservation.confirmation_code)),
    ];
    let mut request = SendRequest::template(
        to,
        template,
        variables.into_iter().map(|(k, v)| (k.to_owned(), v)),
    );
    request.references.customer_id = Some(reservation.customer_id.to_string());
    request.references.reservation_id = Some(reservation.id.to_string());
    // Retrying this call (after a timeout, say) must not text the customer twice.
    request.idempotency_key = Some(format!("reservation-{}-confirmation", reservation.id));
    let submitted = herald.send(tenant, request).await?;
    Ok(Some(submitted.message.id))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let carrier = common::carrier().await?;
    let dir = common::temp_dir("reservation")?;
    let herald = common::herald_with_api(&carrier, &dir).await?;
    let tenant = TenantId::default_tenant();

    let reservation = Reservation {
        id: 9001,
        customer_id: 123,
        customer_name: "John",
        phone: Some("+14155552671"),
        party_size: 4,
        date: "December 24, 2026",
        time: "07:30 PM",
        confirmation_code: "RSV-7QX",
    };
    if let Some(id) =
        send_reservation_confirmation(&herald, &tenant, "reservation_confirmation", &reservation)
            .await?
    {
        let record = herald.message(&tenant, &id).await?;
        println!("{}", record.message.body);
        common::deliver(&herald, &tenant, &id).await?;
    }
    herald.close().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
