//! `switchboard-gateway`: the stateless HTTP edge.

use clap::Parser;
use switchboard_gateway::config::GatewayConfig;

fn main() -> std::process::ExitCode {
    let config = GatewayConfig::parse();
    switchboard_gateway::telemetry::init(config.log_format, &config.log);
    let result = actix_rt::System::new().block_on(switchboard_gateway::server::run(config));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-gateway: {} ({})", e, e.code());
            std::process::ExitCode::FAILURE
        }
    }
}
