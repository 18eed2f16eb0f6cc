//! What wraps every API resource: request metrics, the Origin guard and CORS.

use actix_cors::Cors;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};

use crate::edge::Edge;
use crate::error::ApiFailure;
use crate::metrics::AuthFailure;

/// How long a browser may cache a preflight answer, seconds.
const PREFLIGHT_MAX_AGE: usize = 600;

/// Counts the request by route pattern, method and final status.
pub async fn count(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let edge = req.app_data::<web::Data<Edge>>().cloned();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    // Methods are free text on the wire: fold the unknown ones into one label value.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        _ => "other",
    };
    let res = next.call(req).await;
    if let Some(edge) = edge {
        let status = match &res {
            Ok(r) => r.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        edge.metrics().request(&route, method, status.as_u16());
    }
    res
}

/// Refuses a browser request whose `Origin` is not allowed with a typed 403, preflights
/// included: a foreign page learns it is refused rather than seeing an opaque CORS failure.
/// Requests without `Origin` (not browsers) and same-origin requests pass.
pub async fn guard_origin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    if let Some(edge) = req.app_data::<web::Data<Edge>>() {
        let origin = req.headers().get(header::ORIGIN).map(|v| v.to_str().unwrap_or("(not text)"));
        let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok());
        if !edge.origins().allows(origin, host) {
            edge.metrics().auth_failure(AuthFailure::Origin);
            let shown: String = origin.unwrap_or_default().chars().take(200).collect();
            let res = ApiFailure::forbidden(format!("Origin {shown:?} may not use this API (see --api-origins)"))
                .error_response();
            return Ok(req.into_response(res).map_into_right_body());
        }
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

/// CORS for origins the guard let through: credentials travel in `Authorization`, never in
/// cookies, so no `Access-Control-Allow-Credentials`.
pub fn cors(edge: &web::Data<Edge>) -> Cors {
    let edge = edge.clone();
    Cors::default()
        .allowed_origin_fn(move |origin, head| {
            let host = head.headers().get(header::HOST).and_then(|v| v.to_str().ok());
            origin.to_str().is_ok_and(|o| edge.origins().allows(Some(o), host))
        })
        .allowed_methods([Method::GET, Method::POST, Method::DELETE])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(PREFLIGHT_MAX_AGE)
}
