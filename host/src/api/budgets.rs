//! `PUT /api/v1/sms/budgets/{name}` and `GET /api/v1/sms/budgets`: a tenant's spending limits
//! and their usage in the current period (see [`pipeline::budgets`](crate::pipeline::budgets)).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};

use super::auth::Tenant;
use super::error::ApiResult;
use super::json::ApiJson;
use super::params::{ApiQuery, PathId};
use crate::pipeline::Pipeline;
use crate::pipeline::budgets::{self, BudgetSpec, BudgetView};

/// The budget routes, under `/api/v1/sms`.
pub fn routes() -> Router<Pipeline> {
    Router::new()
        .route("/api/v1/sms/budgets", get(list))
        .route("/api/v1/sms/budgets/{name}", put(put_budget))
}

/// `GET /api/v1/sms/budgets` takes no parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// The answer of `GET /api/v1/sms/budgets`.
#[derive(Debug, Serialize)]
pub struct BudgetList {
    items: Vec<BudgetView>,
}

/// `PUT /api/v1/sms/budgets/{name}`: `201` with the new budget, `200` with a replaced one, each
/// with its usage in the current period; `422 invalid_budget` names what is wrong.
pub async fn put_budget(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(name): PathId,
    ApiJson(spec): ApiJson<BudgetSpec>,
) -> ApiResult<(StatusCode, Json<BudgetView>)> {
    let (view, created) = budgets::put(&pipeline, &tenant, &name, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `GET /api/v1/sms/budgets`: every budget by name, with spent, reserved, remaining and the
/// period's reset time.
pub async fn list(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(NoQuery {}): ApiQuery<NoQuery>,
) -> ApiResult<Json<BudgetList>> {
    let items = budgets::list(&pipeline, &tenant).await?;
    Ok(Json(BudgetList { items }))
}
