//! Remote commands: what support and merchants ask of terminals, what the
//! terminal is told in its contact answer, and what it reports back.

use std::collections::BTreeMap;

wire! {
    /// `POST /api/v1/devices/{id}/commands`, and the command of a
    /// [`GroupCommandRequest`].
    pub struct CommandRequest {
        /// `lock`, `unlock`, `restart`, `message`, `collect_logs` or
        /// `refresh_inventory`.
        pub kind: String,
        /// The text a `message` shows (required) or a `lock` shows while
        /// locked (optional); at most 200 characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message: Option<String>,
        /// What `collect_logs` collects.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub log: Option<LogRequest>,
        /// How long it waits for the terminal, 60 s to 30 days [default: 24 h].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub expires_in_secs: Option<u64>,
    }

    pub struct LogRequest {
        /// Which log: a name the payment app knows (`system`, `payment`, …).
        pub name: String,
        /// RFC 3339: entries from this time on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub since: Option<String>,
        /// RFC 3339: entries before this time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub until: Option<String>,
        /// The upload is refused past this size, 1 B to 100 MiB [default: 10 MiB].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_bytes: Option<u64>,
    }

    /// `POST /api/v1/commands`: one command for many terminals, queued for
    /// each of them at a bounded rate.
    pub struct GroupCommandRequest {
        /// `everyone`, `merchant:M`, `location:L`, `group:G` or `devices:D1,D2,…`.
        pub target: String,
        pub command: CommandRequest,
    }

    pub struct CommandView {
        pub id: i64,
        pub device_id: i64,
        pub kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub log: Option<LogRequest>,
        /// `queued`, `delivered`, `succeeded`, `failed`, `expired` or `cancelled`.
        pub state: String,
        /// Who asked: `user:ID`.
        pub issued_by: String,
        /// The group command it came from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub batch_id: Option<i64>,
        pub created_at: String,
        pub expires_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub delivered_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub finished_at: Option<String>,
        /// What the terminal reported with `failed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error_code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub result_message: Option<String>,
        /// The log it collected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub log_id: Option<i64>,
    }

    pub struct CommandBatchView {
        pub id: i64,
        pub target: String,
        pub kind: String,
        pub issued_by: String,
        pub created_at: String,
        pub expires_at: String,
        /// Terminals it was queued for so far.
        pub queued: u64,
        /// Whether every terminal of the target has its command.
        pub fanned_out: bool,
        /// The commands it queued, by state.
        pub states: BTreeMap<String, u64>,
    }

    /// `POST /api/v1/terminal/commands/{id}/result`.
    pub struct CommandResultRequest {
        /// `succeeded` or `failed`.
        pub status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error_code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message: Option<String>,
    }

    /// A command in a contact answer (inside the signature).
    pub struct CommandInstruction {
        /// Quote it in the result and the log upload.
        pub id: i64,
        pub kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub log: Option<LogUpload>,
        /// Unix seconds: do not carry it out after this.
        pub expires_at: i64,
    }

    /// The log a `collect_logs` command asks for and where to put it.
    pub struct LogUpload {
        pub name: String,
        /// Unix seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub since: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub until: Option<i64>,
        pub max_bytes: u64,
        /// `PUT` the log here with the device token; `Content-Encoding: gzip`
        /// is accepted.
        pub upload_path: String,
    }

    /// A log a terminal uploaded.
    pub struct CollectedLogView {
        pub id: i64,
        pub device_id: i64,
        pub command_id: i64,
        pub name: String,
        /// As uploaded (compressed when `content_encoding` says so).
        pub size: u64,
        pub sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub content_encoding: Option<String>,
        pub uploaded_at: String,
        /// Deleted from the store after this.
        pub expires_at: String,
        pub download_path: String,
    }
}
