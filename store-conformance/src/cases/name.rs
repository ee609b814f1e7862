//! Cases for [`SessionStore::name`](session_core::SessionStore::name): the
//! name every `Error::Backend` of the store carries.

use crate::{Context, Failure, Outcome};

/// The store's name is not empty and the same on every call.
pub async fn name_is_stable_and_not_empty(cx: Context) -> Outcome {
    let first = cx.store().name();
    if first.is_empty() {
        return Err(Failure::new("name()", "a non-empty name", "\"\""));
    }
    for _ in 0..3 {
        tokio::task::yield_now().await;
        let again = cx.store().name();
        if again != first {
            return Err(Failure::new(
                "name() called again",
                format!("{first:?}"),
                format!("{again:?}"),
            ));
        }
    }
    Ok(())
}
