//! The one error shape every service answers with, and a lenient JSON body
//! extractor that produces it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

/// An HTTP error answered as `{"error": message}` with `status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// A one-line, human-readable reason.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: missing or invalid credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 404: no such resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// An axum extractor's rejection, reshaped: 422 (well-formed but the
    /// wrong fields) becomes 400 like any other unusable body; other statuses
    /// (413, 415...) are kept.
    pub fn rejected(status: StatusCode, reason: impl Into<String>) -> Self {
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        Self::new(status, reason)
    }

    /// 500: something on our side failed (an I/O error, say).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// The fallback of every service: an unknown path is a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// A JSON request body, parsed whatever its `Content-Type` says.
///
/// axum's own `Json` answers 415 without `Content-Type: application/json` and
/// 422 for a well-formed body of the wrong shape; stand-ins that people poke
/// with `curl -d` are friendlier when every unusable body is one 400 with the
/// parser's reason.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::rejected(e.status(), e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}
