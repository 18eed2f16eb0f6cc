//! `switchboard-gateway`: the stateless HTTP edge (access tokens, ICE server configuration, the
//! admin API and the browser SDK). It is built by the gateway issue; until then the node serves
//! the demo page itself, and this binary says so instead of pretending to run.

fn main() -> std::process::ExitCode {
    eprintln!(
        "switchboard-gateway: not available in this release; run `switchboard-node` (it serves the demo page at /)"
    );
    std::process::ExitCode::from(2)
}
