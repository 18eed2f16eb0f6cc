//! `switchboard-gateway`: the stateless HTTP edge.

fn main() -> std::process::ExitCode {
    eprintln!("switchboard-gateway: being built");
    std::process::ExitCode::from(2)
}
