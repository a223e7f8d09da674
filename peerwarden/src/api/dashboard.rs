//! The web dashboard: `GET /` and `GET /assets/{file}`. The page, its script and its style
//! sheet are compiled into the binary, so a gateway serves its dashboard with no files to
//! install and no request leaving for a CDN; the page then reads the JSON API.

use axum::{
    extract::Path,
    http::header,
    response::{IntoResponse, Response},
};

use super::ApiError;

const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");

/// The embedded assets: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard/style.css"),
    ),
];

/// Only this origin: the page can load nothing from elsewhere, even if edited carelessly.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The assets change with the binary; revalidating costs little on a LAN.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The dashboard page (HTML).
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "the dashboard", content_type = "text/html", body = String)))]
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

/// A script or style sheet of the dashboard.
#[utoipa::path(get, path = "/assets/{file}", tag = "dashboard",
    params(("file" = String, Path, description = "`app.js` or `style.css`")),
    responses(
        (status = 200, description = "the asset (JavaScript or CSS)", body = String),
        (status = 404, body = super::error::ErrorBody),
    ))]
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, body)| page(content_type, body))
        .ok_or_else(|| ApiError::NotFound(format!("no dashboard asset {file:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_only_its_own_assets() {
        for (name, _, body) in ASSETS {
            assert!(
                INDEX_HTML.contains(&format!("/assets/{name}")),
                "{name} is not used by the page"
            );
            for text in [INDEX_HTML, body] {
                // The SVG namespace is a name, not a request.
                let text = text.replace("http://www.w3.org/2000/svg", "");
                assert!(
                    !text.contains("http://")
                        && !text.contains("https://")
                        && !text.contains("//cdn"),
                    "{name}: external reference"
                );
            }
        }
    }
}
