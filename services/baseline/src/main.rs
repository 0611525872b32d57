use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = oneword_baseline::Config::parse();
    let (settings, grpc) = (config.server.settings(), config.listen);
    oneword_runtime::serve::main(
        settings,
        &config.clone(),
        grpc,
        None,
        |listeners, shutdown| oneword_baseline::run(config, listeners, shutdown),
    )
    .await
}
