//! The operators' dashboard: static files compiled into the binary (`dashboard/`), served at
//! `/dashboard/`, with `/` leading there. No Node.js builds or serves it; the chart libraries are
//! vendored (`dashboard/vendor/vendor.lock`). It signs in through `POST /ops/auth/login`, reads
//! through the ops API and follows the fleet through `/ops/live`.

use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError, web};

/// Each file: its name under `/dashboard/`, its type, its bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../dashboard/index.html")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../dashboard/app.css")),
    ("i18n.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/i18n.js")),
    ("live.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/live.js")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/app.js")),
    (
        "vendor/echarts.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../dashboard/vendor/echarts.min.js"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../dashboard/vendor/uPlot.iife.min.js"),
    ),
    ("vendor/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../../dashboard/vendor/uPlot.min.css")),
    ("vendor/echarts.LICENSE", "text/plain; charset=utf-8", include_bytes!("../../dashboard/vendor/echarts.LICENSE")),
    ("vendor/echarts.NOTICE", "text/plain; charset=utf-8", include_bytes!("../../dashboard/vendor/echarts.NOTICE")),
    ("vendor/uPlot.LICENSE", "text/plain; charset=utf-8", include_bytes!("../../dashboard/vendor/uPlot.LICENSE")),
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(home)))
        .service(web::resource("/dashboard").route(web::get().to(home)))
        .service(web::resource("/dashboard/{file:.*}").route(web::get().to(file)));
}

async fn home() -> HttpResponse {
    HttpResponse::Found().insert_header((header::LOCATION, "/dashboard/")).finish()
}

async fn file(path: web::Path<String>) -> HttpResponse {
    let name = match path.as_str() {
        "" => "index.html",
        other => other,
    };
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *content_type))
            // The page itself is always fetched afresh; the vendored files change only with a
            // new binary.
            .insert_header((
                header::CACHE_CONTROL,
                if name.starts_with("vendor/") { "max-age=86400" } else { "no-cache" },
            ))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(*bytes),
        None => super::ApiError::NotFound(format!("/dashboard/{name}")).error_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_loads_is_served() {
        let index = std::str::from_utf8(FILES[0].2).expect("utf-8");
        for part in index.split(['"', '\'']).filter(|p| p.ends_with(".js") || p.ends_with(".css")) {
            assert!(FILES.iter().any(|(n, _, _)| *n == part), "index.html loads {part}, which is not served");
        }
    }
}
