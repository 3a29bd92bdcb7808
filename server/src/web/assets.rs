//! The pages' stylesheet, script and icon: part of the binary, served under
//! names that carry their content's hash, so browsers keep them for a year
//! and a new build is fetched at once.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use sha2::{Digest, Sha256};

struct Asset {
    stem: &'static str,
    extension: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const FILES: [Asset; 3] = [
    Asset {
        stem: "portal",
        extension: "css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../static/portal.css"),
    },
    Asset {
        stem: "portal",
        extension: "js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../static/portal.js"),
    },
    Asset {
        stem: "icon",
        extension: "svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../static/icon.svg"),
    },
];

/// The paths the pages link to.
pub struct Assets {
    pub css: String,
    pub js: String,
    pub icon: String,
    /// (file name, content type, bytes)
    served: Vec<(String, &'static str, &'static [u8])>,
}

pub static ASSETS: LazyLock<Assets> = LazyLock::new(|| {
    let served: Vec<(String, &'static str, &'static [u8])> = FILES
        .iter()
        .map(|a| {
            let digest = hex::encode(&Sha256::digest(a.bytes)[..6]);
            (format!("{}.{digest}.{}", a.stem, a.extension), a.content_type, a.bytes)
        })
        .collect();
    let path = |i: usize| format!("/static/{}", served[i].0);
    Assets { css: path(0), js: path(1), icon: path(2), served }
});

/// `GET /static/{name}`: only the current names; an old hash is a 404 so
/// a stale page never runs with a mismatched script.
pub async fn serve(name: web::Path<String>) -> HttpResponse {
    match ASSETS.served.iter().find(|(n, _, _)| *n == *name) {
        Some((_, content_type, bytes)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(*bytes),
        None => HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("no such file"),
    }
}
