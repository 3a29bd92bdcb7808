//! Wire types of devices and transactions: the terminal API the payment apps
//! call, and the management API over devices and transactions.

use std::collections::BTreeMap;

use super::accounts::LocationView;

wire! {
    /// Step one of activation, sent by the app.
    pub struct ActivationStartRequest {
        pub email: String,
        pub password: String,
        /// `salespoint` (terminal) or `tapngo` (phone).
        pub app: String,
        /// Terminal serial number (salespoint) or the app's install id (tapngo).
        pub hardware_id: String,
        /// Terminal or phone model.
        pub model: String,
    }

    pub struct ActivationTicket {
        /// Single use, short-lived: send it with step two.
        pub ticket: String,
        pub expires_at: String,
        pub merchant_id: i64,
        /// Where this user may activate the app.
        pub locations: Vec<LocationView>,
        /// For a terminal, the location it was delivered to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub registered_location_id: Option<i64>,
    }

    /// Step two: the chosen location and device name.
    pub struct ActivationCompleteRequest {
        pub ticket: String,
        pub location_id: i64,
        pub device_name: String,
    }

    pub struct ActivatedDevice {
        pub device_id: i64,
        /// Shown once: the app sends it as `Authorization: Bearer <token>`.
        pub device_token: String,
        pub name: String,
        pub location_id: i64,
        /// The deactivated device this one replaces (its history moved here).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replaces_device_id: Option<i64>,
    }

    /// A user logging in to the app on an activated device.
    pub struct DeviceLoginRequest {
        pub email: String,
        pub password: String,
    }

    pub struct TransactionUpload {
        /// The terminal's own id of the transaction; a retried upload with the
        /// same id is recognised and not stored twice.
        pub terminal_tx_id: String,
        pub occurred_at: String,
        /// `payment`, `refund`, `reversal`, `preauthorisation` or `completion`.
        #[serde(rename = "type")]
        pub tx_type: String,
        /// Amount in minor units (cents).
        pub amount_minor: i64,
        /// ISO 4217 code, e.g. `EUR`.
        pub currency: String,
        pub acquirer: String,
        /// Masked card data only, e.g. `**** 1234`; a full PAN is refused.
        pub masked_card: String,
        /// `success`, `failure`, `cancelled` or `unknown`.
        pub status: String,
        pub receipt_printed: bool,
    }

    pub struct TransactionBatch {
        pub transactions: Vec<TransactionUpload>,
    }

    pub struct TransactionBatchResult {
        /// Newly stored.
        pub accepted: u32,
        /// Already stored by an earlier upload (retries).
        pub duplicates: u32,
    }

    pub struct ManualStatusRequest {
        /// `success` or `failure`.
        pub status: String,
    }

    pub struct TransactionView {
        pub id: i64,
        pub terminal_tx_id: String,
        pub occurred_at: String,
        pub device_id: i64,
        pub location_id: i64,
        #[serde(rename = "type")]
        pub tx_type: String,
        pub amount_minor: i64,
        pub currency: String,
        pub acquirer: String,
        pub masked_card: String,
        /// The status in effect: the manual one when set, else the automatic one.
        pub status: String,
        /// `automatic` or `manual`.
        pub status_source: String,
        /// What the terminal determined.
        pub automatic_status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub manual_set_by: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub manual_set_at: Option<String>,
        pub receipt_printed: bool,
    }

    pub struct CurrencyTotal {
        pub currency: String,
        pub count: i64,
        /// Net amount of the successful transactions, in minor units:
        /// payments and completions minus refunds and reversals.
        pub net_amount_minor: i64,
    }

    pub struct TransactionPage {
        pub items: Vec<TransactionView>,
        /// Pass as `after` for the next page; absent on the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub next_cursor: Option<String>,
        /// Totals per currency over the whole filter, not only this page; on
        /// the first page only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub totals: Option<Vec<CurrencyTotal>>,
    }

    pub struct DeviceSessionView {
        pub user_id: i64,
        pub email: String,
        pub started_at: String,
    }

    pub struct DeviceView {
        pub id: i64,
        /// `android` (a payment app on a terminal or phone) or `linux` (a
        /// device on hawkBit's DDI API, taking firmware images only).
        #[serde(default)]
        pub kind: String,
        pub merchant_id: i64,
        pub location_id: i64,
        pub name: String,
        pub app: String,
        /// Terminal serial number or phone install id.
        pub hardware_id: String,
        pub model: String,
        /// `active`, `deactivated` or `replaced`.
        pub status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub firmware_version: Option<String>,
        /// The model the terminal reported at its last contact, when it is not
        /// the registered one: a swapped or misreporting device. (What a
        /// terminal may get is decided on the registered model.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reported_model: Option<String>,
        /// Apps the device reported at its last TMS contact.
        pub installed_apps: Vec<String>,
        /// Free storage it reported with its last state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub free_storage_bytes: Option<u64>,
        /// Its latest health report (battery, network, printer, uptime).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub health: Option<super::contact::TerminalHealth>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub health_reported_at: Option<String>,
        pub activated_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub last_contact_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub deactivated_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replaces_device_id: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replaced_by_device_id: Option<i64>,
        /// What a Linux device reported about itself through DDI's
        /// `configData` (hardware revision, serial numbers, …).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub attributes: BTreeMap<String, String>,
        /// Users logged in to the app on it.
        pub sessions: Vec<DeviceSessionView>,
        /// The last acquirer parameter session per acquirer.
        pub acquirer_sessions: Vec<super::acquirers::AcquirerSessionView>,
    }

    /// A terminal not heard from for longer than its merchant's threshold.
    pub struct MissingTerminalView {
        pub device_id: i64,
        pub merchant_id: i64,
        pub location_id: i64,
        pub name: String,
        pub hardware_id: String,
        pub last_contact_at: String,
        pub missing_since: String,
    }

    /// `PUT /api/v1/merchants/{id}/missing-threshold`.
    pub struct MissingThresholdRequest {
        /// Hours without contact before a terminal is missing, 1 to 2160;
        /// `null`: the server's default (`missing_after_hours`).
        pub hours: Option<i64>,
    }

    pub struct MissingThresholdView {
        pub merchant_id: i64,
        pub hours: i64,
        /// Whether this is the server's default.
        pub default: bool,
    }

    /// `POST /api/v1/linux-devices`: registers a Linux device that speaks
    /// hawkBit's DDI API, and issues its TargetToken.
    pub struct RegisterLinuxDeviceRequest {
        pub location_id: i64,
        /// Its DDI controller id (the last part of its URL), unique among
        /// Linux devices: 1 to 64 letters, digits, `.`, `_`, `-` or `:`.
        pub controller_id: String,
        /// The model its firmware releases name.
        pub model: String,
        /// Defaults to the controller id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
    }

    pub struct LinuxDeviceRegistered {
        pub device: DeviceView,
        /// The device's DDI TargetToken (`Authorization: TargetToken …`),
        /// shown once; the server keeps only its hash.
        pub target_token: String,
    }

    pub struct UpdateDeviceRequest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        /// Move it to another of the merchant's locations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub location_id: Option<i64>,
    }
}
