//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "TMS API",
        description = "Terminal management system: the terminal API that payment terminals call, \
                       and the management API behind the tms CLI."
    ),
    paths(
        crate::http::health::healthz,
        crate::http::health::readyz,
        crate::http::health::metrics,
        crate::http::health::openapi,
    ),
    components(schemas(
        tms_packages::wire::ErrorEnvelope,
        tms_packages::wire::ErrorBody,
        tms_packages::wire::Health,
        tms_packages::wire::Readiness,
    )),
    tags((name = "operations", description = "Health, readiness, metrics and this document"))
)]
pub struct ApiDoc;

/// The document as committed in `server/openapi.json`.
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any change to the API shows up as a diff of `server/openapi.json`.
    /// After an intended change: `UPDATE_OPENAPI=1 cargo test -p tms-server openapi`.
    #[test]
    fn document_matches_the_committed_snapshot() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let current = document_json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &current).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == current,
            "the OpenAPI document changed; review and run UPDATE_OPENAPI=1 cargo test -p tms-server openapi\n{current}"
        );
    }
}
