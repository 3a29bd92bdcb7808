//! Seeds a simulated fleet for tests and benchmarks (`tms-server fleet
//! seed`): merchants with an admin, locations, registered terminals from an
//! order per location, and the payment app activated on each, as an order
//! and an activation would leave them. Device tokens are derived from a seed,
//! so the simulator that drives the fleet can compute them.

use std::io::Write;

use diesel::prelude::*;
use tms_packages::accounts::address_key;
use tms_signing::Sha256Digest;

use crate::auth::tokens;
use crate::db::schema::{device_inventory, devices, locations, merchants, orders, terminals, users};
use crate::db::{DbConnection, DbError};
use crate::time::now;

#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub merchants: u32,
    pub locations_per_merchant: u32,
    pub terminals: u64,
    pub models: Vec<String>,
    /// Tokens are `tms_d_` + sha256(seed, device number).
    pub token_seed: String,
    /// A state each terminal has reported, as if it had called once: this
    /// app (id, version, version code) on one of three firmware versions
    /// in turn. `None`: terminals that never called.
    pub reported: Option<(String, String, u64)>,
    /// Linux devices on the DDI API (controller ids `ddi-<run>-<n>`, no
    /// registered terminal) instead of Android terminals.
    pub linux: bool,
}

/// The firmware versions seeded terminals report, in turn.
pub const SEEDED_FIRMWARE: [&str; 3] = ["9.0.0", "9.1.0", "10.0.0"];

/// The device token of the n-th seeded terminal.
pub fn seeded_token(seed: &str, n: u64) -> String {
    let digest = Sha256Digest::of(format!("{seed}\u{0}{n}").as_bytes());
    format!("tms_d_{}", digest.to_hex())
}

fn id_of<F>(conn: &mut DbConnection, f: F) -> Result<i64, DbError>
where
    F: FnOnce(&mut DbConnection) -> Result<i64, diesel::result::Error>,
{
    Ok(f(conn)?)
}

/// Creates the fleet; writes `device_id,token,model,merchant_id,location_id`
/// per terminal to `out`. Returns the number of devices.
pub fn seed(conn: &mut DbConnection, spec: &FleetSpec, out: &mut dyn Write) -> Result<u64, DbError> {
    let at = now();
    let run = hex::encode(&Sha256Digest::of(spec.token_seed.as_bytes()).as_bytes()[..4]);
    let mut places: Vec<(i64, i64, i64, i64)> = Vec::new(); // merchant, location, order, admin
    crate::db::write_tx(conn, |conn| {
        for m in 0..spec.merchants.max(1) {
            let insert = diesel::insert_into(merchants::table).values((
                merchants::name.eq(format!("Fleet {run} merchant {m}")),
                merchants::contact_email.eq(format!("fleet-{run}-{m}@example.invalid")),
                merchants::status.eq("active"),
                merchants::created_at.eq(at),
            ));
            let merchant =
                id_of(conn, |c| crate::per_backend!(c, |c| insert.returning(merchants::id).get_result(c)))?;
            let insert = diesel::insert_into(users::table).values((
                users::email.eq(format!("fleet-{run}-{m}@example.invalid")),
                users::kind.eq("merchant"),
                users::merchant_id.eq(merchant),
                users::is_admin.eq(true),
                users::status.eq("invited"),
                users::created_at.eq(at),
                users::updated_at.eq(at),
            ));
            let admin =
                id_of(conn, |c| crate::per_backend!(c, |c| insert.returning(users::id).get_result(c)))?;
            for l in 0..spec.locations_per_merchant.max(1) {
                let street = format!("Fleetstraat {l}");
                let insert = diesel::insert_into(locations::table).values((
                    locations::merchant_id.eq(merchant),
                    locations::name.eq(format!("Location {l}")),
                    locations::address_line1.eq(&street),
                    locations::address_line2.eq(""),
                    locations::postal_code.eq("1000 AA"),
                    locations::city.eq("Amsterdam"),
                    locations::country.eq("NL"),
                    locations::address_key.eq(address_key(&street, "", "1000 AA", "Amsterdam", "NL")),
                    locations::created_at.eq(at),
                ));
                let location = id_of(conn, |c| {
                    crate::per_backend!(c, |c| insert.returning(locations::id).get_result(c))
                })?;
                let insert = diesel::insert_into(orders::table).values((
                    orders::merchant_id.eq(merchant),
                    orders::location_id.eq(location),
                    orders::created_by.eq(admin),
                    orders::created_at.eq(at),
                ));
                let order =
                    id_of(conn, |c| crate::per_backend!(c, |c| insert.returning(orders::id).get_result(c)))?;
                places.push((merchant, location, order, admin));
            }
        }
        Ok::<_, DbError>(())
    })?;
    let models = if spec.models.is_empty() { vec!["A920".to_owned()] } else { spec.models.clone() };
    let mut n: u64 = 0;
    while n < spec.terminals {
        let end = (n + 5_000).min(spec.terminals);
        let mut lines = Vec::with_capacity((end - n) as usize);
        crate::db::write_tx(conn, |conn| {
            for i in n..end {
                let (merchant, location, order, admin) = places[(i % places.len() as u64) as usize];
                let model = &models[(i % models.len() as u64) as usize];
                let serial =
                    if spec.linux { format!("ddi-{run}-{i:08}") } else { format!("FLEET-{run}-{i:08}") };
                let insert = diesel::insert_into(terminals::table).values((
                    terminals::merchant_id.eq(merchant),
                    terminals::location_id.eq(location),
                    terminals::order_id.eq(order),
                    terminals::serial.eq(&serial),
                    terminals::model.eq(model),
                    terminals::registered_at.eq(at),
                ));
                let terminal = if spec.linux {
                    None
                } else {
                    Some(id_of(conn, |c| {
                        crate::per_backend!(c, |c| insert.returning(terminals::id).get_result(c))
                    })?)
                };
                let kind = if spec.linux { crate::devices::LINUX } else { crate::devices::ANDROID };
                let token = seeded_token(&spec.token_seed, i);
                let insert = diesel::insert_into(devices::table).values((
                    devices::merchant_id.eq(merchant),
                    devices::location_id.eq(location),
                    devices::terminal_id.eq(terminal),
                    devices::app.eq(if spec.linux { crate::devices::LINUX } else { "salespoint" }),
                    devices::kind.eq(kind),
                    devices::name.eq(format!("Terminal {i}")),
                    devices::hardware_id.eq(&serial),
                    devices::model.eq(model),
                    devices::status.eq("active"),
                    devices::token_hash.eq(tokens::hash(&token)),
                    devices::activated_by.eq(admin),
                    devices::activated_at.eq(at),
                ));
                let device =
                    id_of(conn, |c| crate::per_backend!(c, |c| insert.returning(devices::id).get_result(c)))?;
                if let Some((app_id, version, code)) = &spec.reported {
                    let state = tms_packages::wire::contact::TerminalState {
                        model: model.clone(),
                        firmware: SEEDED_FIRMWARE[(i % 3) as usize].to_owned(),
                        firmware_sha256: None,
                        apps: vec![tms_packages::wire::contact::InstalledApp {
                            app_id: app_id.clone(),
                            version: version.clone(),
                            version_code: *code,
                            sha256: "0".repeat(64),
                        }],
                        parameters: Default::default(),
                        acquirers: Default::default(),
                    };
                    diesel::insert_into(device_inventory::table)
                        .values((
                            device_inventory::device_id.eq(device),
                            device_inventory::firmware.eq(&state.firmware),
                            device_inventory::state_json
                                .eq(serde_json::to_string(&state).expect("states serialise")),
                            device_inventory::digest.eq(state.digest()),
                            device_inventory::wifi.eq(true),
                            device_inventory::time_zone.eq("Europe/Paris"),
                            device_inventory::utc_offset_minutes.eq(60),
                            device_inventory::free_storage_bytes.eq(1i64 << 30),
                            device_inventory::reported_at.eq(at),
                        ))
                        .execute(conn)?;
                }
                lines.push(format!("{device},{token},{model},{merchant},{location},{serial}\n"));
            }
            Ok::<_, DbError>(())
        })?;
        for line in lines {
            out.write_all(line.as_bytes())
                .map_err(|e| DbError::Write { what: "the tokens file".into(), source: e })?;
        }
        n = end;
    }
    Ok(n)
}
