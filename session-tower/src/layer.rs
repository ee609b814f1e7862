//! The tower `Layer` and `Service`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};
use session_core::{CookieAction, SessionManager, Timestamp};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::RenderedCookie;
use crate::session::CookieHeaders;
use crate::{CookieConfig, CrossSiteGuard, Session};

/// Adds a [`Session`] to every request and commits it after the inner
/// service has answered.
///
/// For each request the layer
///
/// 1. reads the session cookie (without any store call: the session loads
///    lazily on first use),
/// 2. puts a [`Session`] into the request's extensions (the axum extractor
///    takes it from there),
/// 3. calls the inner service,
/// 4. commits the session and writes `Set-Cookie` as the manager decides:
///    the id with `Max-Age` after a change or a sliding touch, an empty
///    value with `Max-Age=0` after logout, nothing when nothing changed.
///
/// Before all of that, a state-changing request that another site made
/// the browser send is answered with a bare `403 Forbidden`, without a
/// store call or the inner service ([`CrossSiteGuard`]; on by default,
/// configured with [`SessionLayer::with_cross_site_guard`], switched off
/// with [`SessionLayer::without_cross_site_guard`]).
///
/// Every response that carries the session's `Set-Cookie` is made
/// uncacheable: its `Cache-Control` becomes `no-store`, whatever the
/// handler set (a `public, max-age=600` beside a session cookie would let
/// a shared cache hand one user's session to the next visitor), and the
/// targeted fields `CDN-Cache-Control` and `Surrogate-Control` (RFC 9213),
/// which a CDN would obey instead, are removed.
///
/// A store error while committing turns the response into a bare
/// `500 Internal Server Error` with an empty body; the details go to
/// `tracing` only. After [`Session::logout`](session_core::Session::logout)
/// that 500 still overwrites the browser's cookie: a user who asked to be
/// logged out keeps no session id, even when the store could not delete
/// the record.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_core::SessionManager;
/// use session_store_memory::MemoryStore;
/// use session_tower::{CookieConfig, Session, SessionLayer};
///
/// async fn count(session: Session) -> Result<String, session_tower::SessionError> {
///     let n = session.get::<u64>("n").await?.unwrap_or(0) + 1;
///     session.insert("n", n).await?;
///     Ok(format!("visit {n}"))
/// }
///
/// let manager = SessionManager::new(MemoryStore::default());
/// let app: Router = Router::new()
///     .route("/", get(count))
///     .layer(SessionLayer::new(manager).with_cookie(CookieConfig::default()));
/// ```
#[derive(Debug, Clone)]
pub struct SessionLayer {
    manager: SessionManager,
    cookie: Arc<RenderedCookie>,
    guard: Option<CrossSiteGuard>,
}

impl SessionLayer {
    /// A layer over `manager` with the default [`CookieConfig`].
    pub fn new(manager: SessionManager) -> Self {
        Self {
            manager,
            cookie: Arc::new(RenderedCookie::new(CookieConfig::default())),
            guard: Some(CrossSiteGuard::default()),
        }
    }

    /// Sets the cross-site request guard (for example to allow another
    /// origin of yours).
    pub fn with_cross_site_guard(mut self, guard: CrossSiteGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Lets every request through, cross-site ones included: for apps
    /// that guard against cross-site requests otherwise (CSRF tokens, an
    /// earlier layer).
    pub fn without_cross_site_guard(mut self) -> Self {
        self.guard = None;
        self
    }

    /// Sets the cookie attributes.
    pub fn with_cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = Arc::new(RenderedCookie::new(cookie));
        self
    }

    /// The manager.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        // A `Secure` cookie means the app is served over HTTPS: the scheme
        // the guard assumes for requests that do not name one.
        let https = self.cookie.config().secure();
        SessionService {
            inner,
            manager: self.manager.clone(),
            cookie: Arc::clone(&self.cookie),
            guard: self.guard.clone().map(|guard| guard.assume_https(https)),
        }
    }
}

/// The service [`SessionLayer`] wraps around an inner service.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
    cookie: Arc<RenderedCookie>,
    guard: Option<CrossSiteGuard>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if let Some(guard) = &self.guard
            && !guard.allows(&request)
        {
            tracing::debug!(
                method = %request.method(),
                uri = %request.uri(),
                "cross-site request refused; answering 403"
            );
            return Box::pin(async { Ok(forbidden()) });
        }
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // The session is made lazily, on the handler's first use (see
        // `Session`): here the `Cookie` headers are only kept (clones
        // share the request's bytes).
        let session = Session::new(
            self.manager.clone(),
            CookieHeaders::of(request.headers()),
            Arc::clone(&self.cookie),
        );
        request.extensions_mut().insert(session.clone());
        let cookie = Arc::clone(&self.cookie);
        Box::pin(async move {
            let response = inner.call(request).await?;
            // Never touched: nothing to commit (a commit would answer
            // `Unchanged` without a store call anyway).
            let Some(touched) = session.touched() else {
                return Ok(response);
            };
            Ok(commit(touched, session.manager(), &cookie, response).await)
        })
    }
}

/// Commits `session` and writes what the cookie must become into
/// `response` (or a bare 500).
async fn commit<B: Default>(
    session: &session_core::Session,
    manager: &SessionManager,
    cookie: &RenderedCookie,
    mut response: Response<B>,
) -> Response<B> {
    let header = match manager.commit(session).await {
        Ok(CookieAction::Unchanged) => return response,
        Ok(CookieAction::Superseded) => {
            tracing::debug!(
                "a login moved this session to a new owner first; its changes were dropped"
            );
            return response;
        }
        Ok(CookieAction::Clear) => cookie.config().clear(),
        Ok(CookieAction::Set { value, expires_at }) => {
            let secs = expires_at.duration_since(Timestamp::now()).as_secs();
            cookie.set(&value, i64::try_from(secs).unwrap_or(i64::MAX))
        }
        Err(error) if session.is_logged_out() => {
            tracing::error!(%error, "logout could not delete the session; answering 500 and clearing the cookie");
            response = internal_error();
            cookie.config().clear()
        }
        Err(error) => {
            tracing::error!(%error, "session commit failed; answering 500");
            return internal_error();
        }
    };
    match HeaderValue::try_from(header) {
        Ok(value) => {
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, value);
            // A response that sets a session cookie must not be cached by a
            // shared cache and served to someone else, whatever the
            // handler said.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.remove("cdn-cache-control");
            headers.remove("surrogate-control");
            response
        }
        Err(error) => {
            tracing::error!(%error, "session cookie is not a valid header; answering 500");
            internal_error()
        }
    }
}

/// A bare 403 with an empty body.
fn forbidden<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}

/// A bare 500 with an empty body.
pub(crate) fn internal_error<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
