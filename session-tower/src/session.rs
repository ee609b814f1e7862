//! The per-request handle and its axum extractor.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use session_core::SessionManager;

use crate::config::{RenderedCookie, cookie_values};

/// One request's session, as the [`SessionLayer`](crate::SessionLayer)
/// hands it out: a [`session_core::Session`] (all its methods are available
/// through `Deref`) plus the [`SessionManager`] for user-wide operations
/// such as [`SessionManager::logout_everywhere`].
///
/// In axum, take it as a handler argument. Elsewhere, find it in the
/// request's extensions: `request.extensions().get::<Session>()`.
///
/// Cheap to clone (one reference count); clones share the session.
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

/// Shared by the clones of one request's [`Session`].
///
/// The [`session_core::Session`] is made on the first dereference, not
/// when the request arrives: a request whose handler never touches its
/// session (a health check, a static page) then costs neither the id
/// parse nor the session's allocation, and the layer skips its commit.
/// `SessionManager::load` makes no store call either way, so only the
/// moment of that cheap step moves; what a handler sees is the same.
struct Inner {
    manager: SessionManager,
    /// The request's `Cookie` headers (clones share the request's bytes),
    /// scanned for the session cookie on first use.
    cookies: CookieHeaders,
    /// The session cookie's name.
    cookie: Arc<RenderedCookie>,
    session: OnceLock<session_core::Session>,
}

/// Never prints the cookies: the session cookie is the session's secret.
impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("manager", &self.manager)
            .field("cookie_headers", &self.cookies.iter().count())
            .field("session", &self.session.get())
            .finish()
    }
}

impl Session {
    /// A session for a request with `cookies` (its `Cookie` header values).
    pub(crate) fn new(
        manager: SessionManager,
        cookies: CookieHeaders,
        cookie: Arc<RenderedCookie>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                manager,
                cookies,
                cookie,
                session: OnceLock::new(),
            }),
        }
    }

    /// The manager this session belongs to.
    pub fn manager(&self) -> &SessionManager {
        &self.inner.manager
    }

    /// The session if anything dereferenced it; `None` means the request
    /// never touched it, and there is nothing to commit.
    pub(crate) fn touched(&self) -> Option<&session_core::Session> {
        self.inner.session.get()
    }
}

impl Deref for Session {
    type Target = session_core::Session;

    fn deref(&self) -> &Self::Target {
        self.inner.session.get_or_init(|| {
            let name = self.inner.cookie.config().name();
            self.inner
                .manager
                .load_any(cookie_values(self.inner.cookies.iter(), name))
        })
    }
}

/// A request's `Cookie` headers: one under HTTP/1.1 (kept inline, no
/// allocation), possibly several under HTTP/2, which may split cookies
/// into one header each.
#[derive(Default)]
pub(crate) struct CookieHeaders {
    first: Option<HeaderValue>,
    more: Vec<HeaderValue>,
}

impl CookieHeaders {
    /// The `Cookie` headers of `headers` (clones share their bytes).
    pub(crate) fn of(headers: &http::HeaderMap) -> Self {
        let mut all = headers.get_all(http::header::COOKIE).iter();
        Self {
            first: all.next().cloned(),
            more: all.cloned().collect(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &HeaderValue> {
        self.first.iter().chain(&self.more)
    }
}

/// A handler used the [`Session`] extractor without a
/// [`SessionLayer`](crate::SessionLayer) around it: a wiring bug, answered
/// with a bare 500.
#[derive(Debug, Clone, Copy)]
pub struct MissingSessionLayer;

impl std::fmt::Display for MissingSessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no SessionLayer around this handler")
    }
}

impl std::error::Error for MissingSessionLayer {}

#[cfg(feature = "axum")]
mod axum_support {
    use axum_core::extract::FromRequestParts;
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;

    use super::{MissingSessionLayer, Session};
    use crate::SessionError;

    impl<S: Send + Sync> FromRequestParts<S> for Session {
        type Rejection = MissingSessionLayer;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<Session>()
                .cloned()
                .ok_or(MissingSessionLayer)
        }
    }

    impl IntoResponse for MissingSessionLayer {
        fn into_response(self) -> Response {
            tracing::error!("Session extractor used without a SessionLayer");
            crate::layer::internal_error()
        }
    }

    impl IntoResponse for SessionError {
        fn into_response(self) -> Response {
            tracing::error!(error = %self.0, "session error in a handler; answering 500");
            crate::layer::internal_error()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::HeaderValue;
    use session_core::{SessionId, SessionManager};
    use session_store_memory::MemoryStore;

    use super::{CookieHeaders, Session};
    use crate::CookieConfig;
    use crate::config::RenderedCookie;

    #[tokio::test]
    async fn debug_never_prints_the_cookie_value() -> Result<(), session_core::Error> {
        let id = SessionId::generate()?.to_cookie_value();
        let cookie = Arc::new(RenderedCookie::new(CookieConfig::default()));
        let header = format!("{}={id}", cookie.config().name());
        let header = HeaderValue::from_str(&header).map_err(|e| {
            session_core::Error::backend(
                "test",
                "test",
                false,
                std::io::Error::other(e.to_string()),
            )
        })?;
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::COOKIE, header);
        let session = Session::new(
            SessionManager::new(MemoryStore::default()),
            CookieHeaders::of(&headers),
            cookie,
        );
        let before = format!("{session:?}");
        let _made: &session_core::Session = &session; // made on first use
        let after = format!("{session:?}");
        for text in [before, after] {
            assert!(!text.contains(&id), "{text}");
        }
        Ok(())
    }
}
