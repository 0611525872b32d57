use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = oneword_index::Config::parse();
    let (settings, grpc) = (config.server.settings(), config.listen);
    oneword_runtime::serve::main(
        settings,
        &config.clone(),
        grpc,
        None,
        |listeners, shutdown| oneword_index::run(config, listeners, shutdown),
    )
    .await
}
