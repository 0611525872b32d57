use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = oneword_gateway::Config::parse();
    let (settings, grpc) = (config.server.settings(), config.listen);
    oneword_runtime::serve::main(
        settings,
        &config.clone(),
        grpc,
        Some(config.http_listen),
        |listeners, shutdown| oneword_gateway::run(config, listeners, shutdown),
    )
    .await
}
