//! The browser client: `/` is the demo page, and every file [`assets::FILES`] lists is served
//! at its path, from the binary (nothing is read from disk).

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::assets;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| async { page("text/html; charset=utf-8", assets::INDEX_HTML) }));
    for &(path, content_type, body) in assets::FILES {
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        if path == "/" {
            continue;
        }
        cfg.route(&path, web::get().to(move || async move { page(content_type, body) }));
    }
}

fn page(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        // Revalidate every load: the files change with every release and are small.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}
