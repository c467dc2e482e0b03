//! `POST /api/v1/sms/estimate`: the dry run. It takes the body of `/send` without the need for a
//! recipient (`message`, or `template_id` + `template_variables`; `category`; `to_number` to
//! check its opt-outs) and answers what [`pipeline::estimate`](crate::pipeline::estimate)
//! finds, sending nothing.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;

use super::auth::Tenant;
use super::error::ApiResult;
use super::json::ApiJson;
use super::messages::Reference;
use crate::pipeline::Pipeline;
use crate::pipeline::accept::{self, Content};
use crate::pipeline::estimate::{self, Estimate, EstimateRequest};

/// The dry-run route, under `/api/v1/sms`.
pub fn routes() -> Router<Pipeline> {
    Router::new().route("/api/v1/sms/estimate", post(estimate))
}

/// The body of `POST /api/v1/sms/estimate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateBody {
    /// The text, when not using a template.
    pub message: Option<String>,
    /// The template to render (its id), instead of `message`.
    pub template_id: Option<Reference>,
    /// Values for the template's variables.
    #[serde(default)]
    pub template_variables: BTreeMap<String, serde_json::Value>,
    /// The category the message would have (default: the template's, else `transactional`).
    pub category: Option<String>,
    /// A recipient whose opt-outs to check (E.164); optional.
    pub to_number: Option<String>,
}

/// `POST /api/v1/sms/estimate`: `200` with the rendered text, its encoding, segments and units,
/// the characters that force UCS-2, the Smart Encoding alternative, and `cost: null`.
pub async fn estimate(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<EstimateBody>,
) -> ApiResult<Json<Estimate>> {
    let request = EstimateRequest {
        content: Content::from_parts(
            body.message,
            body.template_id.map(String::from),
            body.template_variables,
        )?,
        category: body.category.as_deref().map(accept::category).transpose()?,
        to: body
            .to_number
            .as_deref()
            .map(accept::recipient)
            .transpose()?,
    };
    Ok(Json(estimate::estimate(&pipeline, &tenant, request).await?))
}
