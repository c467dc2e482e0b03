//! Embedding Herald in a larger application: an orders service that owns its own HTTP server,
//! nests Herald's API (which the provider's status callbacks reach) under `/sms`, and sends
//! through the library — no HTTP call to itself.
//!
//! Run with: `cargo xtask build-plugins && cargo run -p herald --example embed`

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use herald::{Herald, MessageStatus, SendRequest, TenantId};

/// The orders service's own state: it holds a Herald like any other dependency.
#[derive(Clone)]
struct Orders {
    herald: Herald,
}

/// `POST /orders/{id}/ready`: the kitchen marks an order ready; the customer gets a text.
async fn order_ready(State(orders): State<Orders>, Path(id): Path<String>) -> String {
    let Ok(to) = "+14155552671".parse() else {
        return "bad number".into();
    };
    let mut request = SendRequest::text(to, format!("Order {id} is ready for pickup!"));
    request.references.order_id = Some(id);
    match orders
        .herald
        .send(&TenantId::default_tenant(), request)
        .await
    {
        Ok(submitted) => submitted.message.id,
        Err(e) => format!("not sent: {e}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let carrier = common::carrier().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let dir = common::temp_dir("embed")?;

    // Herald's routes live under /sms, so that is the public URL providers call back on.
    let config = common::config(&format!("{base}/sms"), &carrier, &dir);
    let herald = Herald::builder().config(config).build().await?;
    let app = Router::new()
        .route("/orders/{id}/ready", post(order_ready))
        .with_state(Orders {
            herald: herald.clone(),
        })
        .nest("/sms", herald.router());

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn({
        let mut stopped = stopped.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        }
    });
    let dispatcher = tokio::spawn({
        let herald = herald.clone();
        let mut stopped = stopped;
        async move {
            herald
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        }
    });

    // The application calls Herald directly, as its order handler would.
    let tenant = TenantId::default_tenant();
    let to = "+14155552671".parse()?;
    let submitted = herald
        .send(
            &tenant,
            SendRequest::text(to, "Hello from an embedded Herald"),
        )
        .await?;
    let id = submitted.message.id;
    println!(
        "accepted {id}: {} segment(s), {}",
        submitted.message.segments,
        submitted.message.encoding.as_str()
    );
    for _ in 0..100 {
        let record = herald.message(&tenant, &id).await?;
        if record.message.status == MessageStatus::Delivered {
            let history: Vec<&str> = record.history.iter().map(|e| e.status.as_str()).collect();
            println!("delivered: {}", history.join(" → "));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let _ = stop.send(true);
    server.await??;
    dispatcher.await?;
    herald.close().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
