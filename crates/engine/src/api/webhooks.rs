//! Webhook requests: list, add, change, remove webhooks and read their last deliveries
//! (the service itself is `crate::webhook`).

use super::error::store_error;
use super::local::{blocking, LocalConsole};
use super::{ApiError, ErrorCode, Request, Response};
use crate::store::WebhookRow;
use crate::webhook::{AddError, WebhookChange, WebhookError};

/// Most deliveries one request answers with.
const MAX_DELIVERIES: u32 = 1000;

impl LocalConsole {
    pub(super) async fn webhook_request(&self, request: Request) -> Result<Response, ApiError> {
        let hooks = self.webhooks.clone();
        blocking(move || match request {
            Request::ListWebhooks => hooks
                .list()
                .map(Response::ListWebhooks)
                .map_err(store_error),
            Request::AddWebhook {
                url,
                events,
                secret,
                enabled,
            } => hooks
                .add(WebhookRow {
                    url,
                    events,
                    secret,
                    enabled,
                })
                .map(Response::AddWebhook)
                .map_err(add_error),
            Request::UpdateWebhook {
                id,
                url,
                events,
                secret,
                enabled,
            } => hooks
                .update(
                    id,
                    WebhookChange {
                        url,
                        events,
                        secret,
                        enabled,
                    },
                )
                .map(Response::UpdateWebhook)
                .map_err(add_error),
            Request::RemoveWebhook { id } => hooks
                .remove(id)
                .map(|()| Response::RemoveWebhook { id })
                .map_err(add_error),
            Request::WebhookDeliveries { webhook_id, limit } => {
                let limit = limit.unwrap_or(50);
                if limit == 0 || limit > MAX_DELIVERIES {
                    return Err(ApiError::invalid(format!(
                        "limit: {limit}; from 1 to {MAX_DELIVERIES}"
                    )));
                }
                hooks
                    .deliveries(webhook_id, limit)
                    .map(Response::WebhookDeliveries)
                    .map_err(store_error)
            }
            other => Err(ApiError::internal(format!(
                "not a webhook request: {other:?}"
            ))),
        })
        .await
    }
}

fn add_error(e: AddError) -> ApiError {
    match e {
        AddError::Invalid(e @ WebhookError::NotFound(_)) => ApiError::not_found(e.to_string()),
        AddError::Invalid(e @ WebhookError::TooMany) => {
            ApiError::new(ErrorCode::TooLarge, e.to_string())
        }
        AddError::Invalid(e) => ApiError::invalid(e.to_string()),
        AddError::Store(e) => store_error(e),
    }
}
