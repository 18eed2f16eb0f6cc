use clap::Parser;
use switchboard_node::config::Config;

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    switchboard_node::telemetry::init(&config);
    let result = actix_rt::System::new().block_on(switchboard_node::run(config));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-node: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
