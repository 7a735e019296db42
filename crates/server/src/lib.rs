//! axum transport for the engine API.
