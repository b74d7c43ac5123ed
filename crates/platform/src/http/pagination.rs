//! Keyset pagination, the same for every list of the platform: `?limit=`
//! (default 50, 1 to 200) and `?cursor=` (the id after which the page
//! starts; empty is the first page), answered `{items, next_cursor}`.

use crate::Problem;
use actix_web::HttpResponse;
use serde::Serialize;
use uuid::Uuid;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// A page asked for, parsed from the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    /// Rows strictly after this id; `None` is the first page.
    pub cursor: Option<Uuid>,
}

impl PageRequest {
    /// `cursor=` (empty) is the first page, for clients that always send
    /// the last page's `next_cursor`.
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<Self, Problem> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Problem::invalid_field(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let cursor = match cursor.filter(|raw| !raw.is_empty()) {
            Some(raw) => Some(
                Uuid::parse_str(raw)
                    .map_err(|_| Problem::invalid_field("cursor", "is not a valid cursor"))?,
            ),
            None => None,
        };
        Ok(Self { limit, cursor })
    }

    /// Rows to read: one more than the page, to learn whether another follows.
    pub fn rows_to_read(&self) -> i64 {
        self.limit + 1
    }
}

/// A page of `T`, from at most [`PageRequest::rows_to_read`] rows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass it back as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Keeps the first `limit` of `rows`; when there were more, the next
    /// page starts after the last one kept (its id by `id_of`).
    pub fn from_rows(request: &PageRequest, mut rows: Vec<T>, id_of: impl Fn(&T) -> Uuid) -> Self {
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last().map(|row| id_of(row).to_string())
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

impl<T: Serialize> Page<T> {
    /// 200 with the page.
    pub fn respond(&self) -> HttpResponse {
        HttpResponse::Ok().json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits_and_cursors() {
        let first = PageRequest::parse(None, Some("")).unwrap();
        assert_eq!((first.limit, first.cursor), (50, None));
        let id = Uuid::now_v7();
        let next = PageRequest::parse(Some(200), Some(&id.to_string())).unwrap();
        assert_eq!((next.limit, next.cursor), (200, Some(id)));
        for (limit, cursor, field) in [
            (Some(0), None, "limit"),
            (Some(201), None, "limit"),
            (None, Some("nope"), "cursor"),
        ] {
            let problem = PageRequest::parse(limit, cursor).unwrap_err();
            assert_eq!(problem.errors[0].field, field);
        }
    }

    #[test]
    fn a_page_knows_whether_another_follows() {
        let request = PageRequest::parse(Some(2), None).unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page = Page::from_rows(&request, ids.clone(), |id| *id);
        assert_eq!(page.items, ids[..2]);
        assert_eq!(page.next_cursor, Some(ids[1].to_string()));
        let last = Page::from_rows(&request, ids[..2].to_vec(), |id| *id);
        assert_eq!(last.next_cursor, None);
    }
}
