//! Transactions: a keyset-paged list with filters and totals, and the CSV
//! export of exactly the filtered set, streamed.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime};
use futures_util::StreamExt;
use serde::Deserialize;
use tms_packages::accounts::Permission;
use tms_packages::wire::accounts::LocationView;
use tms_packages::wire::devices::{CurrencyTotal, TransactionView};

use super::i18n::paris;
use super::{Ctx, Lang, OrPage, Session, WebError, page};
use crate::accounts::merchants;
use crate::devices::export::{self, ExportFormat};
use crate::devices::management::{self, DeviceFilter, DeviceSummary};
use crate::devices::transactions::{self, Cursor, TransactionFilter};
use crate::error::{Error, ErrorChain};
use crate::http::AppState;

const PAGE_SIZE: i64 = 50;
/// The period shown before the merchant chooses one: the last week.
const DEFAULT_DAYS: i64 = 7;
/// Totals are computed with the page for periods up to this long; a longer
/// period (a year of a busy shop is a million rows) gets them on their own
/// page, which the script loads into this one.
const INLINE_TOTALS_DAYS: i64 = 31;
pub const STATUSES: [&str; 4] = ["success", "failure", "cancelled", "unknown"];

/// The filter as the form sends it: every field optional, dates as days.
/// `from` absent (a first visit) means the last week; present and empty,
/// no lower bound.
#[derive(Deserialize, Default, Clone)]
pub struct FilterQuery {
    from: Option<String>,
    #[serde(default)]
    to: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    terminal: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    manual: String,
    #[serde(default)]
    after: String,
}

impl FilterQuery {
    fn day(lang: Lang, field: &str, text: &str) -> Result<Option<NaiveDate>, WebError> {
        match text.trim() {
            "" => Ok(None),
            t => NaiveDate::parse_from_str(t, "%Y-%m-%d").map(Some).map_err(|_| WebError::Page {
                lang,
                status: actix_web::http::StatusCode::BAD_REQUEST,
                message: lang.format("transactions.bad_date", &[&field]),
            }),
        }
    }

    fn id(text: &str) -> Option<i64> {
        text.trim().parse().ok()
    }

    /// The first visit's period, written into the form.
    fn with_default_period(mut self, today: NaiveDate) -> FilterQuery {
        if self.from.is_none() {
            self.from =
                Some((today - chrono::Duration::days(DEFAULT_DAYS - 1)).format("%Y-%m-%d").to_string());
        }
        self
    }

    fn period_start(&self) -> &str {
        self.from.as_deref().unwrap_or_default()
    }

    /// Whether the totals are cheap enough to compute with the page.
    fn short_period(&self, today: NaiveDate) -> bool {
        let from = NaiveDate::parse_from_str(self.period_start().trim(), "%Y-%m-%d").ok();
        let to = NaiveDate::parse_from_str(self.to.trim(), "%Y-%m-%d").ok().unwrap_or(today);
        from.is_some_and(|f| (to - f).num_days() < INLINE_TOTALS_DAYS)
    }

    /// The domain's filter: days are French days, and `to` is a whole day,
    /// so up to the next midnight.
    fn filter(&self, lang: Lang) -> Result<TransactionFilter, WebError> {
        let start = |d: NaiveDate| -> NaiveDateTime { paris::day_start_utc(d) };
        Ok(TransactionFilter {
            from: Self::day(lang, "from", self.period_start())?.map(start),
            to: Self::day(lang, "to", &self.to)?.and_then(|d| d.succ_opt()).map(start),
            location_id: Self::id(&self.location),
            device_id: Self::id(&self.terminal),
            status: STATUSES.contains(&self.status.as_str()).then(|| self.status.clone()),
            manual_only: self.manual == "1",
        })
    }

    /// The same filter as a query string, for the next page and the export.
    fn query_string(&self, after: Option<&str>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        // Always sent, even empty: an empty `from` (all time) must stay so.
        q.append_pair("from", self.period_start().trim());
        for (k, v) in [
            ("to", &self.to),
            ("location", &self.location),
            ("terminal", &self.terminal),
            ("status", &self.status),
            ("manual", &self.manual),
        ] {
            if !v.trim().is_empty() {
                q.append_pair(k, v.trim());
            }
        }
        if let Some(a) = after {
            q.append_pair("after", a);
        }
        q.finish()
    }
}

pub struct Row {
    pub tx: TransactionView,
    pub terminal: String,
    pub location: String,
}

#[derive(Template)]
#[template(path = "transactions.html")]
struct TransactionsPage {
    ctx: Ctx,
    query: FilterQuery,
    rows: Vec<Row>,
    totals: Vec<CurrencyTotal>,
    locations: Vec<LocationView>,
    terminals: Vec<DeviceSummary>,
    statuses: [&'static str; 4],
    next_page: Option<String>,
    export_link: Option<String>,
    /// For a long period: where its totals are computed on their own.
    totals_link: Option<String>,
    first_page: bool,
}

impl TransactionsPage {
    fn query_first(&self) -> String {
        self.query.query_string(None)
    }

    fn selected(&self, field: &str, value: impl std::fmt::Display) -> bool {
        let value = value.to_string();
        match field {
            "location" => self.query.location == value,
            "from" => self.query.period_start() == value,
            "terminal" => self.query.terminal == value,
            "status" => self.query.status == value,
            _ => false,
        }
    }
}

pub async fn list(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<FilterQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = session.lang;
    let merchant_id = session.merchant_id()?;
    let today = paris::today(crate::time::now());
    let query = query.into_inner().with_default_period(today);
    let filter = query.filter(lang)?;
    let cursor = match query.after.trim() {
        "" => None,
        text => Some(Cursor::decode(text).or_page(lang)?),
    };
    let inline_totals = cursor.is_none() && query.short_period(today);
    let actor = session.actor.clone();
    let (locations, terminals, result) = state
        .db
        .run(move |conn| {
            let locations = merchants::list_locations(conn, &actor, merchant_id)?;
            let terminals = management::summaries(conn, &actor, merchant_id, &DeviceFilter::default())?;
            let scope =
                transactions::scope_for(conn, &actor, merchant_id, Permission::ViewTransactions, filter)?;
            let mut result = transactions::page_without_totals(conn, &scope, cursor, PAGE_SIZE)?;
            if inline_totals {
                result.totals = Some(transactions::totals(conn, &scope)?);
            }
            Ok::<_, Error>((locations, terminals, result))
        })
        .await
        .or_page(lang)?;
    let name_of = |id: i64| terminals.iter().find(|t| t.id == id).map(|t| t.name.clone()).unwrap_or_default();
    let location_of = |id: i64| super::location_name(&locations, id);
    let rows = result
        .items
        .into_iter()
        .map(|tx| Row { terminal: name_of(tx.device_id), location: location_of(tx.location_id), tx })
        .collect();
    let may_export = session.actor.is_admin_of(merchant_id)
        || locations
            .iter()
            .any(|l| session.actor.may(merchant_id, Some(l.id), Permission::ExportTransactions));
    let page_data = TransactionsPage {
        ctx: session.ctx("transactions"),
        next_page: result
            .next_cursor
            .as_deref()
            .map(|c| format!("/transactions?{}", query.query_string(Some(c)))),
        export_link: may_export.then(|| format!("/transactions/export.csv?{}", query.query_string(None))),
        totals_link: (cursor.is_none() && !inline_totals)
            .then(|| format!("/transactions/totals?{}", query.query_string(None))),
        first_page: cursor.is_none(),
        query,
        rows,
        totals: result.totals.unwrap_or_default(),
        locations,
        terminals,
        statuses: STATUSES,
    };
    page(&page_data.ctx, &page_data)
}

#[derive(Template)]
#[template(path = "transaction_totals.html")]
struct TotalsPage {
    ctx: Ctx,
    totals: Vec<CurrencyTotal>,
    back: String,
}

/// The totals of a filter on their own page (a long period's), which the
/// script loads into the list's page.
pub async fn totals(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<FilterQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = session.lang;
    let merchant_id = session.merchant_id()?;
    let query = query.into_inner().with_default_period(paris::today(crate::time::now()));
    let filter = query.filter(lang)?;
    let actor = session.actor.clone();
    let totals = state
        .db
        .run(move |conn| {
            let scope =
                transactions::scope_for(conn, &actor, merchant_id, Permission::ViewTransactions, filter)?;
            transactions::totals(conn, &scope)
        })
        .await
        .or_page(lang)?;
    let body = TotalsPage {
        ctx: session.ctx("transactions"),
        totals,
        back: format!("/transactions?{}", query.query_string(None)),
    };
    page(&body.ctx, &body)
}

/// The CSV of the filtered transactions (all pages), as the API exports it.
pub async fn export(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<FilterQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = session.lang;
    let merchant_id = session.merchant_id()?;
    let filter = query.into_inner().with_default_period(paris::today(crate::time::now())).filter(lang)?;
    let actor = session.actor.clone();
    let scope = state
        .db
        .run(move |conn| {
            transactions::scope_for(conn, &actor, merchant_id, Permission::ExportTransactions, filter)
        })
        .await
        .or_page(lang)?;
    let stream = export::stream(state.db.clone(), scope, ExportFormat::Csv).map(|chunk| {
        chunk.map_err(|e| {
            tracing::error!(error = %ErrorChain(&e), "transaction export failed");
            actix_web::error::ErrorInternalServerError("export failed")
        })
    });
    let day = crate::time::now().format("%Y-%m-%d");
    Ok(HttpResponse::Ok()
        .content_type(ExportFormat::Csv.content_type())
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"transactions-{day}.csv\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream))
}
