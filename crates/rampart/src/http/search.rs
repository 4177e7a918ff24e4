//! `GET /api/v1/search`: messages matching a query in the caller's channels, newest first, with a
//! cursor for the next page. Quoted phrases, `term*` prefixes, `from:@user` and `in:#channel`.

use axum::extract::{Query, State};
use axum::Json;
use rampart_app::SearchInput;
use rampart_core::limits;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::Session;
use super::wire::MessageView;
use super::{bounded_limit, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    q: Option<String>,
    channel_id: Option<String>,
    from: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
pub struct SearchView {
    pub results: Vec<MessageView>,
    /// Pass as `before` for the next page; `null` when there is none.
    pub next_before: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchView>, ApiError> {
    let limit = bounded_limit(params.limit, limits::SEARCH_PAGE_DEFAULT, limits::SEARCH_PAGE_MAX)?;
    let input = SearchInput {
        q: params.q.unwrap_or_default(),
        channel_id: params.channel_id,
        from: params.from,
        before: params.before,
        limit,
    };
    let (messages, next_before) = state.app.search(&session.auth, input).await?;
    Ok(Json(SearchView { results: messages.iter().map(MessageView::from).collect(), next_before }))
}
