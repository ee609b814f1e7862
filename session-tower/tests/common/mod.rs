//! What the layer's tests share: handlers, an app over a store, requests,
//! and a store that is down.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, Response, header};
use http_body_util::BodyExt;
use session_core::{Error, Record, SessionManager, SessionStore, StorageKey, Timestamp};
use session_tower::{CookieConfig, Session, SessionError, SessionLayer};

/// The default cookie's name.
pub(crate) const NAME: &str = "__Host-session";

pub(crate) async fn put(session: Session) -> Result<&'static str, SessionError> {
    session.insert("n", 1).await?;
    Ok("stored")
}

pub(crate) async fn read(session: Session) -> Result<String, SessionError> {
    Ok(format!("{:?}", session.get::<u64>("n").await?))
}

pub(crate) async fn untouched() -> &'static str {
    "no session used"
}

pub(crate) async fn logout(session: Session) -> &'static str {
    session.logout().await;
    "bye"
}

pub(crate) fn app(store: Arc<dyn SessionStore>, cookie: CookieConfig) -> Router {
    Router::new()
        .route("/put", post(put))
        .route("/read", get(read))
        .route("/untouched", get(untouched))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(SessionManager::from_arc(store)).with_cookie(cookie))
}

pub(crate) fn request(method: &str, uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    builder.body(Body::empty()).unwrap()
}

pub(crate) async fn body(response: Response<Body>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

pub(crate) fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// `session=<value>` from a Set-Cookie header.
pub(crate) fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// A store whose every call fails, as if the backend went away.
pub(crate) struct Down;

#[async_trait::async_trait]
impl SessionStore for Down {
    async fn create(&self, _: &Record) -> Result<(), Error> {
        Err(down("create"))
    }
    async fn load(&self, _: &StorageKey) -> Result<Option<Record>, Error> {
        Err(down("load"))
    }
    async fn save(&self, _: &Record) -> Result<u64, Error> {
        Err(down("save"))
    }
    async fn touch(&self, _: &StorageKey, _: Timestamp) -> Result<bool, Error> {
        Err(down("touch"))
    }
    async fn delete(&self, _: &StorageKey) -> Result<bool, Error> {
        Err(down("delete"))
    }
    async fn list_by_user(&self, _: &str) -> Result<session_core::UserSessions, Error> {
        Err(down("list_by_user"))
    }
    async fn delete_by_user(&self, _: &str) -> Result<u64, Error> {
        Err(down("delete_by_user"))
    }
    async fn delete_expired(&self) -> Result<u64, Error> {
        Err(down("delete_expired"))
    }
}

pub(crate) fn down(op: &'static str) -> Error {
    Error::backend(
        "down",
        op,
        true,
        std::io::Error::other("secret-backend-detail: connection refused"),
    )
}

pub(crate) fn from(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "app.example");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}
