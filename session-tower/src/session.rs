//! The per-request handle and its axum extractor.

use std::ops::Deref;

use session_core::SessionManager;

/// One request's session, as the [`SessionLayer`](crate::SessionLayer)
/// hands it out: a [`session_core::Session`] (all its methods are available
/// through `Deref`) plus the [`SessionManager`] for user-wide operations
/// such as [`SessionManager::logout_everywhere`].
///
/// In axum, take it as a handler argument. Elsewhere, find it in the
/// request's extensions: `request.extensions().get::<Session>()`.
#[derive(Debug, Clone)]
pub struct Session {
    session: session_core::Session,
    manager: SessionManager,
}

impl Session {
    pub(crate) fn new(session: session_core::Session, manager: SessionManager) -> Self {
        Self { session, manager }
    }

    /// The manager this session belongs to.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }
}

impl Deref for Session {
    type Target = session_core::Session;

    fn deref(&self) -> &Self::Target {
        &self.session
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
