//! A webhook receiver for the tests (issue 16): a real HTTP server (actix-web, on a thread of
//! its own) that records every request, checks every signature with its own HMAC, and
//! misbehaves per room — fails twice (`flaky`), times out once (`slow`), always fails
//! (`dead`), redirects (`moved`), fails each event's first attempt (`bye`, but its first two).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Got {
    pub body: String,
    pub event: Value,
    pub signed: Result<(), String>,
    pub answered: u16,
}

#[derive(Default)]
pub struct Receiver {
    pub got: Mutex<Vec<Got>>,
    attempts: Mutex<BTreeMap<String, u32>>,
    secret: String,
}

/// Checks `Switchboard-Signature: t=…,v1=…` against HMAC-SHA256(secret, "t.body"), as a receiver
/// would (and `t` no older than 5 minutes).
fn verify(secret: &str, header: Option<&str>, body: &[u8]) -> Result<(), String> {
    let header = header.ok_or("no Switchboard-Signature")?;
    let (t, v1) = header.split_once(",v1=").ok_or("malformed")?;
    let t: u64 = t.strip_prefix("t=").ok_or("no t=")?.parse().map_err(|_| "t not a number")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    if now.abs_diff(t) > 300 {
        return Err(format!("t={t} is more than 5 minutes from now ({now})"));
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let want = hex::decode(v1).map_err(|e| e.to_string())?;
    mac.verify_slice(&want).map_err(|_| "signature does not match".to_string())
}

async fn hook(req: HttpRequest, body: web::Bytes, r: web::Data<Arc<Receiver>>) -> HttpResponse {
    let signed = verify(&r.secret, req.headers().get("switchboard-signature").and_then(|v| v.to_str().ok()), &body);
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = event["id"].as_str().unwrap_or_default().to_string();
    let room = event["room"].as_str().unwrap_or_default().to_string();
    let attempt = {
        let mut a = r.attempts.lock().unwrap();
        let n = a.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    let status = match room.as_str() {
        "flaky" if attempt <= 2 => 500,
        "dead" => 503,
        // A redirect to where a GET would succeed: a client that followed it would lose the body.
        "moved" => 301,
        // The last events of a stopping node fail once: only a node that waits retries them.
        "bye" if attempt == 1 && event["type"] != "room.started" && event["type"] != "peer.joined" => 500,
        "slow" if attempt == 1 => {
            // Longer than the node's 5 s bound: the node must give up on this attempt and retry.
            actix_web::rt::time::sleep(Duration::from_secs(6)).await;
            200
        }
        _ => 200,
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    r.got.lock().unwrap().push(Got { body, event, signed, answered: status });
    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    if status == 301 {
        response.insert_header(("location", "/hook"));
    }
    response.finish()
}

impl Receiver {
    /// Requests that have arrived so far, answered or not.
    pub fn arrived(&self) -> u32 {
        self.attempts.lock().unwrap().values().sum()
    }
}

/// What [`delivered`] gives for one member joining an empty room and leaving it (`left`).
pub const ONE_MEMBER: [&str; 4] = ["room.started - -", "peer.joined p0 -", "peer.left p0 left", "room.finished - -"];

/// What [`delivered`] gives for two members: the second (`p1`) leaves, then the first's (`p0`)
/// socket closes.
pub const TWO_MEMBERS: [&str; 6] = [
    "room.started - -",
    "peer.joined p0 -",
    "peer.joined p1 -",
    "peer.left p1 left",
    "peer.left p0 disconnected",
    "room.finished - -",
];

pub fn start_receiver(port: u16, secret: &str) -> Arc<Receiver> {
    let r = Arc::new(Receiver { secret: secret.to_string(), ..Default::default() });
    let data = web::Data::new(Arc::clone(&r));
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || App::new().app_data(data.clone()).route("/hook", web::post().to(hook)))
                .workers(1)
                .bind(("127.0.0.1", port))
                .expect("bind the receiver")
                .run()
                .await
        })
    });
    r
}

/// `(type, peer index or -, reason)` of one room's delivered events, first delivery of each id,
/// in the order they first arrived.
pub fn delivered(r: &Receiver, room: &str, peers: &[&str]) -> Vec<String> {
    let got = r.got.lock().unwrap();
    let mut seen = std::collections::HashSet::new();
    got.iter()
        .filter(|g| g.event["room"] == room && g.answered == 200)
        .filter(|g| seen.insert(g.event["id"].as_str().unwrap_or_default().to_string()))
        .map(|g| {
            let e = &g.event;
            let who = e["peer"]["id"]
                .as_str()
                .map(|id| peers.iter().position(|p| *p == id).map_or("?".to_string(), |i| format!("p{i}")))
                .unwrap_or_else(|| "-".into());
            let reason = e["reason"].as_str().unwrap_or("-");
            format!("{} {who} {reason}", e["type"].as_str().unwrap_or("?"))
        })
        .collect()
}

pub fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
