//! Merchants and orders, for operator admins and support: search the
//! merchants, a merchant's page (locations, registered terminals, users,
//! acquirer contracts), and a new order, which creates the merchant (first
//! order), the location (new address) and registers the terminals, then
//! sends the first admin's activation e-mail — the API's order, from a form.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::wire::accounts::{
    Address, CreateOrderRequest, LocationView, MerchantView, OrderedTerminal, TerminalView, UserView,
};
use tms_packages::wire::acquirers::{AcquirerView, ContractView};
use tms_packages::wire::devices::{LinuxDeviceRegistered, RegisterLinuxDeviceRequest};
use tms_packages::wire::store::StoreAppSummary;

use super::staff;
use crate::accounts::merchants::{self, MerchantSearch};
use crate::error::{Error, ErrorCode};
use crate::http::AppState;
use crate::web::{Ctx, OrPage, Session, WebError, page, redirect_with};

/// Merchants a page lists.
const PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "console/merchants.html")]
struct ListPage {
    ctx: Ctx,
    q: String,
    merchants: Vec<MerchantView>,
    /// The link to the next page, when there is one.
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    after: Option<i64>,
}

pub async fn list(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    staff(&session)?;
    let query = query.into_inner();
    let search = MerchantSearch { text: Some(query.q.clone()), after: query.after, limit: Some(PAGE + 1) };
    let actor = session.actor.clone();
    let mut found = state
        .db
        .run(move |conn| merchants::search_merchants(conn, &actor, &search))
        .await
        .or_page(session.lang)?;
    let next = if found.len() as i64 > PAGE {
        found.truncate(PAGE as usize);
        found.last().map(|m| {
            let q: String = url::form_urlencoded::byte_serialize(query.q.as_bytes()).collect();
            format!("/console/merchants?q={q}&after={}", m.id)
        })
    } else {
        None
    };
    let body = ListPage { ctx: session.ctx("console.merchants"), q: query.q, merchants: found, next };
    page(&body.ctx, &body)
}

#[derive(Template)]
#[template(path = "console/merchant.html")]
struct ShowPage {
    ctx: Ctx,
    merchant: MerchantView,
    locations: Vec<LocationView>,
    terminals: Vec<TerminalView>,
    users: Vec<UserView>,
    contracts: Vec<ContractView>,
    /// The acquirers a contract may name.
    acquirers: Vec<AcquirerView>,
    contract_refusal: Option<String>,
    /// Why registering a Linux device was refused, with the form as typed.
    linux_refusal: Option<(String, LinuxDeviceForm)>,
    /// The store's apps as this merchant's store shows them, with where they are installed.
    store_apps: Vec<StoreAppSummary>,
}

impl ShowPage {
    fn location_name(&self, id: &i64) -> String {
        self.locations
            .iter()
            .find(|l| l.id == *id)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    /// A field of the Linux device form as typed, when it was refused.
    fn linux_value(&self, field: &str) -> String {
        let Some((_, form)) = &self.linux_refusal else { return String::new() };
        match field {
            "location_id" => form.location_id.clone(),
            "controller_id" => form.controller_id.clone(),
            "model" => form.model.clone(),
            _ => form.name.clone(),
        }
    }

    fn address(&self, a: &Address) -> String {
        [a.line1.as_str(), a.line2.as_str(), &format!("{} {}", a.postal_code, a.city), a.country.as_str()]
            .iter()
            .filter(|p| !p.trim().is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    render_show(&state, &session, id.into_inner(), None, None).await
}

/// A merchant's page, with the refusal of a contract just sent.
pub async fn render_show(
    state: &AppState,
    session: &Session,
    id: i64,
    contract_refusal: Option<String>,
    linux_refusal: Option<(String, LinuxDeviceForm)>,
) -> Result<HttpResponse, WebError> {
    staff(session)?;
    let actor = session.actor.clone();
    let (merchant, locations, terminals, users, contracts, acquirers, store_apps) = state
        .db
        .run(move |conn| {
            Ok::<_, Error>((
                merchants::show_merchant(conn, &actor, id)?,
                merchants::list_locations(conn, &actor, id)?,
                merchants::list_terminals(conn, &actor, id)?,
                crate::accounts::users::list_users(conn, &actor, id)?,
                crate::acquirers::list_contracts(conn, &actor, id)?,
                crate::acquirers::list(conn, &actor)?,
                crate::store::catalogue(
                    conn,
                    &actor,
                    &crate::store::CatalogueQuery { merchant_id: Some(id), search: None, category: None },
                )?,
            ))
        })
        .await
        .or_page(session.lang)?;
    let body = ShowPage {
        ctx: session.ctx("console.merchants"),
        merchant,
        locations,
        terminals,
        users,
        contracts,
        acquirers,
        contract_refusal,
        linux_refusal,
        store_apps,
    };
    page(&body.ctx, &body)
}

/// The form that registers a Linux device (hawkBit DDI) at a location.
#[derive(Deserialize, Default, Clone)]
pub struct LinuxDeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub location_id: String,
    #[serde(default)]
    pub controller_id: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Template)]
#[template(path = "console/linux_registered.html")]
struct LinuxRegisteredPage {
    ctx: Ctx,
    merchant_id: i64,
    registered: LinuxDeviceRegistered,
    tenant: String,
}

/// Registers a Linux device and shows its TargetToken, once; a refusal goes
/// back to the merchant's page with the form as typed.
pub async fn register_linux(
    state: web::Data<AppState>,
    session: Session,
    merchant_id: web::Path<i64>,
    form: web::Form<LinuxDeviceForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let merchant_id = merchant_id.into_inner();
    let form = form.into_inner();
    let request = form
        .location_id
        .trim()
        .parse::<i64>()
        .map_err(|_| Error::invalid("location_id", "choose a location"))
        .map(|location_id| RegisterLinuxDeviceRequest {
            location_id,
            controller_id: form.controller_id.trim().to_owned(),
            model: form.model.trim().to_owned(),
            name: Some(form.name.trim().to_owned()).filter(|n| !n.is_empty()),
        });
    let result = match request {
        Ok(request) => {
            let actor = session.actor.clone();
            state.db.run(move |conn| crate::devices::linux::register(conn, &actor, &request)).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(registered) => {
            let body = LinuxRegisteredPage {
                ctx: session.ctx("console.merchants"),
                merchant_id,
                registered,
                tenant: state.config.ddi_tenant.clone(),
            };
            page(&body.ctx, &body)
        }
        Err(e) if super::refusable(&e) => {
            let text = crate::web::form_refusal(session.lang, "console.linux", &e);
            render_show(&state, &session, merchant_id, None, Some((text, form))).await
        }
        Err(e) => Err(WebError::from_domain(session.lang, e)),
    }
}

/// The order form, as typed (kept when refused).
#[derive(Deserialize, Default)]
pub struct OrderForm {
    #[serde(default)]
    csrf: String,
    /// An existing merchant's id, or empty for a new merchant.
    #[serde(default)]
    pub merchant: String,
    #[serde(default)]
    pub company_name: String,
    #[serde(default)]
    pub contact_email: String,
    #[serde(default)]
    pub location_name: String,
    #[serde(default)]
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    #[serde(default)]
    pub postal_code: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub country: String,
    /// One terminal per line: its serial and model.
    #[serde(default)]
    pub terminals: String,
}

impl OrderForm {
    fn request(&self) -> Result<CreateOrderRequest, Error> {
        let merchant_id = match self.merchant.trim() {
            "" => None,
            id => Some(id.parse::<i64>().map_err(|_| Error::invalid("merchant_id", "not a merchant id"))?),
        };
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let mut terminals = Vec::new();
        for line in self.terminals.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut words =
                line.split(|c: char| c.is_whitespace() || c == ',' || c == ';').filter(|w| !w.is_empty());
            let (Some(serial), Some(model)) = (words.next(), words.next()) else {
                return Err(Error::invalid(
                    "terminals",
                    format!("{line:?}: write the serial, then the model"),
                ));
            };
            terminals.push(OrderedTerminal { serial: serial.to_owned(), model: model.to_owned() });
        }
        Ok(CreateOrderRequest {
            merchant_id,
            company_name: if merchant_id.is_none() { text(&self.company_name) } else { None },
            contact_email: if merchant_id.is_none() { text(&self.contact_email) } else { None },
            delivery_address: Address {
                line1: self.line1.trim().to_owned(),
                line2: self.line2.trim().to_owned(),
                postal_code: self.postal_code.trim().to_owned(),
                city: self.city.trim().to_owned(),
                country: self.country.trim().to_uppercase(),
            },
            location_name: text(&self.location_name),
            terminals,
        })
    }
}

#[derive(Template)]
#[template(path = "console/new_order.html")]
struct OrderPage {
    ctx: Ctx,
    form: OrderForm,
    /// The merchant the order is for, when it is an existing one.
    merchant: Option<MerchantView>,
    refusal: Option<String>,
}

async fn render_order(
    state: &AppState,
    session: &Session,
    form: OrderForm,
    refusal: Option<String>,
) -> Result<HttpResponse, WebError> {
    staff(session)?;
    let merchant = match form.merchant.trim().parse::<i64>() {
        Ok(id) => {
            let actor = session.actor.clone();
            Some(
                state
                    .db
                    .run(move |conn| merchants::show_merchant(conn, &actor, id))
                    .await
                    .or_page(session.lang)?,
            )
        }
        Err(_) => None,
    };
    let body = OrderPage { ctx: session.ctx("console.merchants"), form, merchant, refusal };
    page(&body.ctx, &body)
}

#[derive(Deserialize)]
pub struct NewOrderQuery {
    merchant: Option<i64>,
}

pub async fn new_order(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<NewOrderQuery>,
) -> Result<HttpResponse, WebError> {
    let form = OrderForm {
        merchant: query.merchant.map(|m| m.to_string()).unwrap_or_default(),
        country: "FR".into(),
        ..OrderForm::default()
    };
    render_order(&state, &session, form, None).await
}

pub async fn create_order(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<OrderForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let form = form.into_inner();
    let lang = session.lang;
    let refused = |e: &Error| order_refusal(lang, e);
    let request = match form.request() {
        Ok(r) => r,
        Err(e) => return render_order(&state, &session, form, Some(refused(&e))).await,
    };
    let (actor, settings) = (session.actor.clone(), state.accounts.clone());
    match state.db.run(move |conn| merchants::create_order(conn, &actor, &request, &settings)).await {
        Ok((order, mail)) => {
            let sent = match mail {
                Some(mail) => crate::http::accounts::deliver(&state, mail).await,
                None => false,
            };
            let flash = match (order.merchant_created, sent) {
                (true, true) => "flash.order_created_mail_sent",
                (true, false) => "flash.order_created_mail_failed",
                (false, _) => "flash.order_created",
            };
            Ok(redirect_with(&format!("/console/merchants/{}", order.merchant_id), flash))
        }
        Err(e) if super::refusable(&e) => {
            let text = refused(&e);
            render_order(&state, &session, form, Some(text)).await
        }
        Err(e) => Err(WebError::from_domain(lang, e)),
    }
}

/// A refused order in the reader's words, naming the serials at fault.
fn order_refusal(lang: crate::web::Lang, e: &Error) -> String {
    let details = e.public_details();
    match (e.code(), details.get("field").map(String::as_str)) {
        (ErrorCode::TerminalAlreadyRegistered, _) => {
            let serials = details.get("serials").cloned().unwrap_or_default().replace(',', ", ");
            lang.format("console.orders.refused_terminal_already_registered", &[&serials])
        }
        // The domain's message names the line at fault.
        (ErrorCode::InvalidRequest, Some(field)) if field.starts_with("terminals") => {
            lang.format("console.orders.bad_terminals", &[&e.public_message()])
        }
        _ => crate::web::form_refusal(lang, "console.orders", e),
    }
}
