//! The layer against what an attacker (or an unlucky browser) sends: cache
//! headers beside the cookie, odd cookies beside ours, planted cookies of
//! our name, a flood of them, a failing logout, a late request with a
//! rotated id.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::{NAME, app, body, pair, request, set_cookies};
use http::{HeaderValue, Request, StatusCode, header};
use session_core::{
    Error, Record, SessionId, SessionManager, SessionStore, StorageKey, Timestamp, UserSessions,
};
use session_store_memory::MemoryStore;
use session_tower::{CookieConfig, Session, SessionError, SessionLayer};
use tower::ServiceExt;

/// A memory store that counts loads and can fail deletes.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    loads: AtomicUsize,
    fail_delete: AtomicBool,
}

#[async_trait::async_trait]
impl SessionStore for Counting {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.inner.create(record).await
    }
    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key).await
    }
    async fn save(&self, record: &Record) -> Result<u64, Error> {
        self.inner.save(record).await
    }
    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        if self.fail_delete.load(Ordering::SeqCst) {
            return Err(Error::backend(
                "counting",
                "delete",
                true,
                std::io::Error::other("planted delete failure"),
            ));
        }
        self.inner.delete(key).await
    }
    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        self.inner.list_by_user(user).await
    }
    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        self.inner.delete_by_user(user).await
    }
    async fn delete_expired(&self) -> Result<u64, Error> {
        self.inner.delete_expired().await
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

/// A session holding `n = 1`, and the cookie pair for it.
async fn stored_session(app: &Router) -> String {
    let response = app
        .clone()
        .oneshot(request("POST", "/put", None))
        .await
        .unwrap();
    pair(&set_cookies(&response)[0])
}

fn with_cookie_bytes(method: &str, uri: &str, cookie: &[u8]) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::COOKIE, HeaderValue::from_bytes(cookie).unwrap())
        .body(Body::empty())
        .unwrap()
}

fn unknown_id() -> String {
    SessionId::generate().unwrap().to_cookie_value()
}

/// A handler that stores something and asks every cache to keep the page.
async fn cacheable(session: Session) -> Result<impl IntoResponse, SessionError> {
    session.insert("n", 1).await?;
    Ok((
        [
            (header::CACHE_CONTROL, "public, max-age=600, s-maxage=600"),
            (
                header::HeaderName::from_static("cdn-cache-control"),
                "max-age=600",
            ),
            (
                header::HeaderName::from_static("surrogate-control"),
                "max-age=600",
            ),
        ],
        "cache me",
    ))
}

/// The same headers, on a page that does not touch the session.
async fn cacheable_untouched() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "public, max-age=600")], "static")
}

#[tokio::test]
async fn a_handlers_cache_headers_never_survive_beside_the_cookie() {
    let app = Router::new()
        .route("/cacheable", post(cacheable))
        .route("/static", get(cacheable_untouched))
        .layer(SessionLayer::new(SessionManager::new(
            MemoryStore::default(),
        )));
    let response = app
        .clone()
        .oneshot(request("POST", "/cacheable", None))
        .await
        .unwrap();
    assert_eq!(set_cookies(&response).len(), 1);
    let cache_control: Vec<&HeaderValue> = response
        .headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .collect();
    assert_eq!(cache_control, ["no-store"]);
    assert!(response.headers().get("cdn-cache-control").is_none());
    assert!(response.headers().get("surrogate-control").is_none());
    // Without our cookie, the handler's caching is its own business.
    let response = app.oneshot(request("GET", "/static", None)).await.unwrap();
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "public, max-age=600"
    );
}

#[tokio::test]
async fn logout_and_rotation_responses_are_no_store_too() {
    let app = app(Arc::new(MemoryStore::default()), CookieConfig::default());
    let cookie = stored_session(&app).await;
    let response = app
        .oneshot(request("POST", "/logout", Some(&cookie)))
        .await
        .unwrap();
    assert!(set_cookies(&response)[0].contains("Max-Age=0"));
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn a_non_ascii_or_binary_cookie_elsewhere_does_not_hide_the_session() {
    let app = app(Arc::new(MemoryStore::default()), CookieConfig::default());
    let cookie = stored_session(&app).await;
    for other in [
        "greeting=h\u{e9}llo".as_bytes(),
        b"bin=\xff\xfe",
        "\u{1f980}=crab".as_bytes(),
    ] {
        let mut header = other.to_vec();
        header.extend_from_slice(b"; ");
        header.extend_from_slice(cookie.as_bytes());
        let response = app
            .clone()
            .oneshot(with_cookie_bytes("GET", "/read", &header))
            .await
            .unwrap();
        assert!(set_cookies(&response).is_empty(), "{other:?}");
        assert_eq!(body(response).await, "Some(1)", "{other:?}");
    }
}

#[tokio::test]
async fn a_cookie_of_our_name_planted_before_ours_neither_hides_nor_clears_it() {
    let app = app(Arc::new(MemoryStore::default()), CookieConfig::default());
    let real = stored_session(&app).await;
    let plants = [
        // A sibling subdomain's cookie for the parent domain: an unknown id.
        format!("{NAME}={}", unknown_id()),
        // Garbage.
        format!("{NAME}=garbage"),
        // Many garbage values: skipped without a store call.
        (0..50)
            .map(|i| format!("{NAME}=junk{i}"))
            .collect::<Vec<_>>()
            .join("; "),
    ];
    for plant in plants {
        let header = format!("{plant}; {real}");
        let response = app
            .clone()
            .oneshot(request("GET", "/read", Some(&header)))
            .await
            .unwrap();
        assert!(set_cookies(&response).is_empty(), "{plant}: no Clear");
        assert_eq!(body(response).await, "Some(1)", "{plant}");
        let response = app
            .clone()
            .oneshot(request("POST", "/put", Some(&header)))
            .await
            .unwrap();
        let set = set_cookies(&response);
        assert_eq!(set.len(), 1, "{plant}");
        assert_eq!(pair(&set[0]), real, "{plant}: the real id is kept");
    }
}

#[tokio::test]
async fn a_flood_of_well_formed_cookies_costs_a_bounded_number_of_loads() {
    let store = Arc::new(Counting::default());
    let app = app(store.clone(), CookieConfig::default());
    let flood = (0..60)
        .map(|_| format!("{NAME}={}", unknown_id()))
        .collect::<Vec<_>>()
        .join("; ");
    let response = app
        .oneshot(request("GET", "/read", Some(&flood)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Not every cookie was tried, so none is cleared (an untried one may
    // be the live session).
    assert!(set_cookies(&response).is_empty());
    let loads = store.loads.load(Ordering::SeqCst);
    let bound = 2 * SessionManager::MAX_COOKIE_CANDIDATES;
    assert!(
        loads <= bound,
        "{loads} loads for 60 cookies (bound {bound})"
    );
}

#[tokio::test]
async fn a_logout_whose_delete_fails_still_clears_the_cookie() {
    let store = Arc::new(Counting::default());
    let app = app(store.clone(), CookieConfig::default());
    let cookie = stored_session(&app).await;
    store.fail_delete.store(true, Ordering::SeqCst);
    let response = app
        .oneshot(request("POST", "/logout", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let cleared = set_cookies(&response);
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert!(
        cleared[0].starts_with(&format!("{NAME}=;")),
        "{}",
        cleared[0]
    );
    assert!(cleared[0].contains("Max-Age=0"), "{}", cleared[0]);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(body(response).await, "", "no details in the body");
}

async fn login(session: Session) -> Result<&'static str, SessionError> {
    session.login("alice").await?;
    Ok("welcome")
}

#[tokio::test]
async fn a_request_with_the_pre_login_id_after_login_leaves_the_new_cookie_alone() {
    let store = Arc::new(MemoryStore::default());
    let app = Router::new()
        .route("/put", post(common::put))
        .route("/read", get(common::read))
        .route("/login", post(login))
        .layer(SessionLayer::new(SessionManager::from_arc(store.clone())));
    let before = stored_session(&app).await;
    let response = app
        .clone()
        .oneshot(request("POST", "/login", Some(&before)))
        .await
        .unwrap();
    let after = pair(&set_cookies(&response)[0]);
    assert_ne!(after, before);
    // A response to a request sent with the old cookie, landing after the
    // login's: it must not clear the browser's (new) cookie, nor replace
    // it with a new session.
    for (method, uri) in [("GET", "/read"), ("POST", "/put")] {
        let response = app
            .clone()
            .oneshot(request(method, uri, Some(&before)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert!(set_cookies(&response).is_empty(), "{method} {uri}");
        assert_eq!(
            body(response).await,
            if uri == "/read" { "None" } else { "stored" }
        );
    }
    // The signed-in session is as the login left it.
    let response = app
        .oneshot(request("GET", "/read", Some(&after)))
        .await
        .unwrap();
    assert_eq!(body(response).await, "Some(1)");
}
