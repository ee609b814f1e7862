//! The layer over a real axum router, driven request by request without a
//! socket.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use common::{Down, NAME, app, body, from, pair, put, read, request, set_cookies};
use http::{StatusCode, header};
use session_core::{SessionManager, SessionStore};
use session_store_memory::MemoryStore;
use session_tower::{CookieConfig, CrossSiteGuard, SessionLayer};
use tower::ServiceExt;

#[tokio::test]
async fn a_change_sets_a_hardened_persistent_cookie_and_it_works_next_time() {
    let app = app(Arc::new(MemoryStore::default()), CookieConfig::default());
    let response = app
        .clone()
        .oneshot(request("POST", "/put", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(c.contains(attribute), "{attribute} missing from {c}");
    }
    // Max-Age follows the default 30-minute idle timeout.
    let max_age: u64 = c
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1795..=1800).contains(&max_age), "{c}");
    assert!(
        pair(c).starts_with(&format!("{NAME}=")) && pair(c).len() == NAME.len() + 1 + 43,
        "{c}"
    );
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");

    let response = app
        .oneshot(request("GET", "/read", Some(&pair(c))))
        .await
        .unwrap();
    assert!(
        set_cookies(&response).is_empty(),
        "a read-only request must not set a cookie"
    );
    assert_eq!(body(response).await, "Some(1)");
}

#[tokio::test]
async fn an_untouched_request_sets_no_cookie() {
    let app = app(Arc::new(MemoryStore::default()), CookieConfig::default());
    let response = app
        .oneshot(request("GET", "/untouched", None))
        .await
        .unwrap();
    assert!(set_cookies(&response).is_empty());
    assert!(response.headers().get(header::CACHE_CONTROL).is_none());
}

#[tokio::test]
async fn logout_overwrites_the_cookie_with_max_age_zero_and_deletes_the_record() {
    let store = Arc::new(MemoryStore::default());
    let app = app(store.clone(), CookieConfig::default());
    let response = app
        .clone()
        .oneshot(request("POST", "/put", None))
        .await
        .unwrap();
    let cookie = pair(&set_cookies(&response)[0]);
    let id =
        session_core::SessionId::parse(cookie.trim_start_matches(&format!("{NAME}="))).unwrap();

    let response = app
        .clone()
        .oneshot(request("POST", "/logout", Some(&cookie)))
        .await
        .unwrap();
    let cleared = set_cookies(&response);
    assert_eq!(cleared.len(), 1);
    assert!(
        cleared[0].starts_with(&format!("{NAME}=;")),
        "{}",
        cleared[0]
    );
    assert!(cleared[0].contains("Max-Age=0"), "{}", cleared[0]);
    assert!(cleared[0].contains("HttpOnly"), "{}", cleared[0]);
    assert_eq!(store.load(&id.storage_key()).await.unwrap(), None);

    // The old cookie, replayed, is a new empty session.
    let response = app
        .oneshot(request("GET", "/read", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(body(response).await, "None");
}

#[tokio::test]
async fn malformed_and_foreign_cookies_are_just_a_new_session() {
    let app = app(Arc::new(MemoryStore::default()), CookieConfig::default());
    for cookie in [
        format!("{NAME}=garbage"),
        format!("{NAME}="),
        "other=1; theme=dark".to_owned(),
        format!("{NAME}=\"x\""),
        "session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
    ] {
        let response = app
            .clone()
            .oneshot(request("GET", "/read", Some(&cookie)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{cookie}");
        assert_eq!(body(response).await, "None", "{cookie}");
    }
}

#[tokio::test]
async fn cookie_options_are_honoured() {
    let cookie = CookieConfig::default()
        .with_name("sid")
        .with_secure(false)
        .with_persistent(false)
        .with_same_site(session_tower::SameSite::Strict);
    let app = app(Arc::new(MemoryStore::default()), cookie);
    let response = app.oneshot(request("POST", "/put", None)).await.unwrap();
    let c = &set_cookies(&response)[0];
    assert!(c.starts_with("sid="), "{c}");
    assert!(
        c.contains("SameSite=Strict") && c.contains("HttpOnly"),
        "{c}"
    );
    assert!(!c.contains("Secure") && !c.contains("Max-Age"), "{c}");
}

#[tokio::test]
async fn a_store_error_is_a_bare_500_without_details() {
    let app = app(Arc::new(Down), CookieConfig::default());
    let cookie = format!(
        "{NAME}={}",
        session_core::SessionId::generate()
            .unwrap()
            .to_cookie_value()
    );
    // In the handler (load fails) and in the commit (create fails).
    for (method, uri, cookie) in [
        ("GET", "/read", Some(cookie.as_str())),
        ("POST", "/put", None),
    ] {
        let response = app
            .clone()
            .oneshot(request(method, uri, cookie))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{uri}"
        );
        assert!(set_cookies(&response).is_empty());
        assert_eq!(
            body(response).await,
            "",
            "{uri}: the body must not leak details"
        );
    }
    // A handler that never touches the session works while the store is down.
    let response = app
        .oneshot(request("GET", "/untouched", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_a_500() {
    let app: Router = Router::new().route("/read", get(read));
    let response = app.oneshot(request("GET", "/read", None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn invalid_cookie_names_are_refused() {
    assert!(!CookieConfig::is_valid_name(""));
    assert!(!CookieConfig::is_valid_name("a b"));
    assert!(!CookieConfig::is_valid_name("a;b"));
    assert!(CookieConfig::is_valid_name("__Host-session"));
    assert_eq!(CookieConfig::default().with_name("bad name").name(), NAME);
}

#[tokio::test]
async fn a_cross_site_post_is_a_bare_403_without_store_call_or_handler() {
    // Every store call would fail (500) and the handler would store: a 403
    // with no cookie shows that neither ran.
    let app = app(Arc::new(Down), CookieConfig::default());
    for headers in [
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://evil.example"),
        ][..],
        &[("sec-fetch-site", "cross-site")][..],
        // A browser without Fetch Metadata: only the foreign Origin tells.
        &[("origin", "http://evil.example")][..],
        &[("origin", "null")][..],
        // A sibling subdomain or another port of the same site.
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "https://user-content.app.example"),
        ][..],
        // Plain HTTP posting to the HTTPS app (the cookie is Secure).
        &[("origin", "http://app.example")][..],
    ] {
        let response = app
            .clone()
            .oneshot(from("POST", "/put", headers))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(set_cookies(&response).is_empty(), "{headers:?}");
        assert_eq!(body(response).await, "", "{headers:?}");
    }
}

#[tokio::test]
async fn same_origin_forms_safe_methods_and_non_browser_clients_pass() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
    let app = app(store, CookieConfig::default());
    for headers in [
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://app.example"),
        ][..],
        &[("sec-fetch-site", "none")][..],
        &[("origin", "https://app.example")][..],
        // curl, a server, a test: neither header.
        &[][..],
    ] {
        let response = app
            .clone()
            .oneshot(from("POST", "/put", headers))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{headers:?}");
        assert_eq!(set_cookies(&response).len(), 1, "{headers:?}");
    }
    // A cross-site GET is a navigation: it passes (SameSite=Lax decides
    // whether it carries the cookie).
    let response = app
        .oneshot(from(
            "GET",
            "/read",
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://evil.example"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn allowed_origins_pass_and_the_guard_can_be_switched_off() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
    let forged = [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://sso.example"),
    ];
    let allowing = Router::new().route("/put", post(put)).layer(
        SessionLayer::new(SessionManager::from_arc(Arc::clone(&store))).with_cross_site_guard(
            CrossSiteGuard::default()
                .allow_origin("https://sso.example")
                .unwrap(),
        ),
    );
    let response = allowing
        .oneshot(from("POST", "/put", &forged))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let unguarded = Router::new()
        .route("/put", post(put))
        .layer(SessionLayer::new(SessionManager::from_arc(store)).without_cross_site_guard());
    let evil = [
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.example"),
    ];
    let response = unguarded
        .oneshot(from("POST", "/put", &evil))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
